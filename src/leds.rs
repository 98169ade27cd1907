//! The board's LEDs (devicetree aliases `led0`..`led2`: the FRDM-K64F's RGB LED, the GPIO
//! emulator on native_sim). A missing alias is a missing LED, not an error.

use device_app::{LedAction, LED_COUNT};
use zephyr::device::gpio::GpioPin;

/// Why an LED command could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedError {
    /// The board has no LED with this index, or its GPIO is not ready.
    Unavailable,
}

/// The LEDs found at boot, configured as outputs (off), with the level each is driven to.
pub struct Leds {
    pins: [Option<GpioPin>; LED_COUNT as usize],
    levels: [bool; LED_COUNT as usize],
}

fn ready(pin: Option<GpioPin>) -> Option<GpioPin> {
    let mut pin = pin?;
    if !pin.is_ready() {
        return None;
    }
    pin.configure(zephyr::raw::ZR_GPIO_OUTPUT_INIT_LOW);
    Some(pin)
}

impl Leds {
    /// Finds and configures led0..led2.
    pub fn new() -> Self {
        #[cfg(dt = "aliases::led0")]
        let led0 = zephyr::devicetree::aliases::led0::get_instance();
        #[cfg(not(dt = "aliases::led0"))]
        let led0 = None;
        #[cfg(dt = "aliases::led1")]
        let led1 = zephyr::devicetree::aliases::led1::get_instance();
        #[cfg(not(dt = "aliases::led1"))]
        let led1 = None;
        #[cfg(dt = "aliases::led2")]
        let led2 = zephyr::devicetree::aliases::led2::get_instance();
        #[cfg(not(dt = "aliases::led2"))]
        let led2 = None;
        Self {
            pins: [ready(led0), ready(led1), ready(led2)],
            levels: [false; LED_COUNT as usize],
        }
    }

    /// How many LEDs are usable.
    pub fn available(&self) -> usize {
        self.pins.iter().flatten().count()
    }

    /// Carries out `action` on LED `index`; returns the level it is now driven to.
    pub fn apply(&mut self, index: u8, action: LedAction) -> Result<bool, LedError> {
        let slot = usize::from(index);
        let pin = self
            .pins
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(LedError::Unavailable)?;
        let level = self.levels.get_mut(slot).ok_or(LedError::Unavailable)?;
        *level = match action {
            LedAction::On => true,
            LedAction::Off => false,
            LedAction::Toggle => !*level,
        };
        // gpio_pin_set_dt: the logical level, so "on" lights an active-low LED too.
        pin.set(*level);
        Ok(*level)
    }
}

//! Locking the statics the shell and the MQTT thread share.

use zephyr::sync::{Mutex, MutexGuard};

/// Locks `mutex`, waiting as long as it takes. zephyr's `Mutex::lock` cannot fail (its error
/// type is `Infallible`: no poisoning, a panic aborts), so there is nothing to handle.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(never) => match never {},
    }
}

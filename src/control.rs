//! The operator's way in: the `mqtt` and `cred` shell commands. C only registers them
//! (`control.c`); their arguments are checked here
//! ([`device_app::parse_mqtt_command`], host-tested) on the shell's thread.
//!
//! The session and the credential sets stay the MQTT thread's alone. A publish or a `cred`
//! operation goes into one bounded request queue that this thread drains once per loop round
//! ([`serve_requests`]), while it waits for the network and while it waits to reconnect
//! ([`wait_serving`]), so a message published offline goes to the core's outbox; the shell
//! waits (bounded) for the answer. Every request gets an answer, done or refused with its
//! cause; none is dropped (an answer that comes after the shell stopped waiting is logged).
//! A benchmark plan waits in a slot of its own: the MQTT thread publishes the numbered
//! messages itself (a shell line per message would measure the shell, not the client).
//! `mqtt status` prints a snapshot this thread keeps current.

use crate::app::MqttSession;
use crate::net;
use crate::outbox_journal::OutboxJournal;
use crate::runtime_credentials::{self, Credentials};
use crate::sync::lock;
use core::ffi::{c_char, c_int, CStr};
use core::fmt::{self, Write as _};
#[cfg(CONFIG_APP_SHELL_BENCH)]
use device_app::BenchRequest;
use device_app::{
    parse_mqtt_command, write_c_string, CutText, LinkState, ShellCommand, SHELL_PAYLOAD_MAX,
    SHELL_TOPIC_MAX,
};
use heapless::{Deque, String, Vec};
use log::{info, warn};
use mqtt_core::{MessageId, QoS};
use zephyr::sync::Mutex;
use zephyr::sys::sync::Semaphore;
use zephyr::time::Duration;

/// Requests waiting for the MQTT thread; more are refused with "request queue full".
const QUEUE_DEPTH: usize = 4;
/// The MQTT thread answers within one loop round unless it is inside a TLS handshake.
const ANSWER_TIMEOUT_MS: u64 = 5_000;

/// The longest answer: `cred list` with four roots, a certificate and a key.
const ANSWER_MAX: usize = 768;
/// The longest `cred` argument: one shell line.
const CRED_ARG_MAX: usize = 256;

/// What the shell asks the MQTT thread to do.
enum Work {
    Publish {
        topic: String<SHELL_TOPIC_MAX>,
        payload: Vec<u8, SHELL_PAYLOAD_MAX>,
        qos: QoS,
    },
    Cred {
        op: c_int,
        arg: String<CRED_ARG_MAX>,
    },
}

struct Request {
    ticket: u32,
    work: Work,
}

/// Whether the MQTT thread has answered the awaited request, and how. `Not` is a 0 byte
/// (`repr(u8)`), so that [`AWAITED`] is all zero bytes and lies in `.bss`: with an
/// `Option<Answer { done: bool, .. }>` here, `None` was a 2 (the bool's niche) and all 808
/// bytes of it were in `.data`, a copy in flash as well.
#[repr(u8)]
#[derive(Clone, Copy)]
enum Answered {
    Not = 0,
    Done,
    Refused,
}

/// The shell's side of one request: which ticket it waits for, and the answer once given.
struct Awaited {
    last_ticket: u32,
    /// 0: nobody waits.
    ticket: u32,
    answered: Answered,
    /// The answer in words, once `answered`.
    text: CutText<[u8; ANSWER_MAX]>,
}

/// What `mqtt status` prints.
struct Snapshot {
    state: LinkState,
    host: CutText<[u8; 64]>,
    port: u16,
    /// TLS version and cipher suite of the last connection; `None` (a 0 pointer, so that
    /// [`STATUS`] lies in `.bss`) before the first.
    tls: Option<(&'static str, &'static str)>,
    inflight: usize,
    outbox: usize,
    published: u32,
    reconnects: u32,
    last_error: CutText<[u8; 96]>,
}

static REQUESTS: Mutex<Deque<Request, QUEUE_DEPTH>> = Mutex::new(Deque::new());
/// Given when a request is queued (or by [`wake`]): the MQTT thread looks at the queue.
static REQUEST_WAITING: Semaphore = Semaphore::new(0, 1);
static AWAITED: Mutex<Awaited> = Mutex::new(Awaited {
    last_ticket: 0,
    ticket: 0,
    answered: Answered::Not,
    text: CutText::new(),
});
static ANSWERED: Semaphore = Semaphore::new(0, 1);
#[cfg(CONFIG_APP_SHELL_BENCH)]
static BENCH: Mutex<Option<BenchRequest>> = Mutex::new(None);
static STATUS: Mutex<Snapshot> = Mutex::new(Snapshot {
    state: LinkState::WaitingForNetwork,
    host: CutText::new(),
    port: 0,
    tls: None,
    inflight: 0,
    outbox: 0,
    published: 0,
    reconnects: 0,
    last_error: CutText::new(),
});

/// The MQTT thread's handle on the `mqtt status` snapshot.
pub struct Status;

impl Status {
    pub fn new(host: &str, port: u16) -> Self {
        let mut status = lock(&STATUS);
        status.host.clear();
        let _ = status.host.write_str(host);
        status.port = port;
        Status
    }

    pub fn set_state(&mut self, state: LinkState) {
        lock(&STATUS).state = state;
    }

    pub fn set_tls(&mut self, version: &'static str, cipher: &'static str) {
        let mut status = lock(&STATUS);
        status.tls = Some((version, cipher));
    }

    /// Records what ended the last connection or connection attempt, in words.
    pub fn set_last_error(&mut self, cause: &dyn fmt::Display) {
        let mut status = lock(&STATUS);
        status.last_error.clear();
        // Cut rather than lost when longer than the field.
        let _ = write!(status.last_error, "{cause}");
    }

    /// The counters and the queues of this round.
    pub fn update(&mut self, session: &MqttSession<'_>, published: u32, reconnects: u32) {
        let mut status = lock(&STATUS);
        status.published = published;
        status.reconnects = reconnects;
        status.inflight = session.inflight_len();
        status.outbox = session.outbox_len();
    }

    fn update_queues(&mut self, session: &MqttSession<'_>) {
        let mut status = lock(&STATUS);
        status.inflight = session.inflight_len();
        status.outbox = session.outbox_len();
    }
}

/// What a request may change besides the session and the status: the MQTT thread's, lent by
/// its supervisor for the requests of one round.
pub struct Owned<'o> {
    pub journal: &'o mut OutboxJournal,
    pub credentials: &'o mut Credentials,
}

/// Carries out one request and answers it (to the shell, and the outcome of a publish in the
/// log).
fn serve(
    session: &mut MqttSession<'_>,
    status: &mut Status,
    owned: &mut Owned<'_>,
    request: &Request,
) {
    let mut text = CutText::<[u8; ANSWER_MAX]>::new();
    let done = match &request.work {
        Work::Publish {
            topic,
            payload,
            qos,
        } => {
            let outcome = owned.journal.publish(session, topic, payload, *qos, false);
            status.update_queues(session);
            match outcome {
                Ok(MessageId(id)) => {
                    info!("control: pub #{} queued as message {id}", request.ticket);
                    let _ = write!(
                        text,
                        "pub #{} queued as message {id} (outbox {})",
                        request.ticket,
                        session.outbox_len()
                    );
                    true
                }
                Err(cause) => {
                    warn!("control: pub #{} rejected: {cause}", request.ticket);
                    let _ = write!(text, "pub #{} rejected: {cause}", request.ticket);
                    false
                }
            }
        }
        Work::Cred { op, arg } => match owned.credentials.command(*op, arg, &mut text) {
            Ok(()) => true,
            Err(cause) => {
                text.clear();
                let _ = write!(text, "{cause}");
                false
            }
        },
    };
    let mut awaited = lock(&AWAITED);
    if request.ticket == awaited.ticket {
        awaited.answered = if done {
            Answered::Done
        } else {
            Answered::Refused
        };
        awaited.text = text;
        awaited.ticket = 0;
        ANSWERED.give();
    } else if matches!(request.work, Work::Cred { .. }) {
        // The shell stopped waiting (the thread was in a handshake): the log has the answer.
        info!(
            "control: cred answered after the shell stopped waiting: {}",
            text.as_str()
        );
    }
}

fn take_request() -> Option<Request> {
    lock(&REQUESTS).pop_front()
}

/// Serves every request already queued; called once per loop round.
/// Returns how many it served.
pub fn serve_requests(
    session: &mut MqttSession<'_>,
    status: &mut Status,
    owned: &mut Owned<'_>,
) -> usize {
    let mut served = 0;
    while let Some(request) = take_request() {
        serve(session, status, owned, &request);
        served += 1;
    }
    served
}

/// Waits until `clock` reaches `deadline`, serving requests as they come (the reconnect
/// delay: offline publishes go to the outbox at once instead of after the delay), or until
/// `cut_short` says so (of what the requests left) after a [`wake`].
pub fn wait_serving(
    session: &mut MqttSession<'_>,
    status: &mut Status,
    owned: &mut Owned<'_>,
    deadline: u64,
    clock: impl Fn() -> u64,
    cut_short: impl Fn(&Owned<'_>) -> bool,
) {
    loop {
        serve_requests(session, status, owned);
        let left = deadline.saturating_sub(clock());
        if left == 0 || cut_short(owned) {
            return;
        }
        let _ = REQUEST_WAITING.take(at_least_ms(left));
    }
}

/// At least `ms` milliseconds, rounded up to whole kernel ticks: a wait shorter than a tick
/// would be no wait at all, and a loop around it would spin (on native_sim, where time only
/// moves while every thread sleeps, forever).
fn at_least_ms(ms: u64) -> Duration {
    let hz = u64::from(zephyr::time::SYS_FREQUENCY);
    Duration::from_ticks(ms.saturating_mul(hz).div_ceil(1000))
}

/// The benchmark `mqtt bench` left, if any.
#[cfg(CONFIG_APP_SHELL_BENCH)]
pub fn take_bench() -> Option<BenchRequest> {
    lock(&BENCH).take()
}

// --- The shell's side ----------------------------------------------------------------------

/// What the shell prints for a command, and how.
enum Outcome {
    Done,
    Warning,
    Refused,
}

fn run_command(args: &[&str], out: &mut impl fmt::Write) -> Outcome {
    let command = match parse_mqtt_command(args) {
        Ok(command) => command,
        Err(cause) => {
            let _ = write!(out, "{cause}");
            return Outcome::Refused;
        }
    };
    match command {
        ShellCommand::Status => {
            print_status(out);
            Outcome::Done
        }
        #[cfg(not(CONFIG_APP_SHELL_BENCH))]
        ShellCommand::Bench(_) => {
            let _ = write!(out, "bench: not in this build (CONFIG_APP_SHELL_BENCH)");
            Outcome::Refused
        }
        #[cfg(CONFIG_APP_SHELL_BENCH)]
        ShellCommand::Bench(request) => {
            let mut waiting = lock(&BENCH);
            if waiting.is_some() {
                let _ = write!(out, "bench rejected: another one waits for the MQTT thread");
                return Outcome::Refused;
            }
            *waiting = Some(request);
            let _ = write!(
                out,
                "bench queued: {} messages, QoS {}, {} bytes (the MQTT thread logs \"bench: done\")",
                request.count, request.qos as u8, request.payload_len
            );
            Outcome::Done
        }
        ShellCommand::Publish {
            topic,
            payload,
            qos,
        } => publish(topic, payload, qos, out),
    }
}

fn publish(topic: &str, payload: &[u8], qos: QoS, out: &mut impl fmt::Write) -> Outcome {
    // The parser bounded both; these cannot fail.
    let mut owned = String::new();
    let (Ok(()), Ok(payload)) = (owned.push_str(topic), Vec::from_slice(payload)) else {
        let _ = write!(out, "pub rejected: topic or payload too long");
        return Outcome::Refused;
    };
    let work = Work::Publish {
        topic: owned,
        payload,
        qos,
    };
    ask("pub", work, out, |ticket, out| {
        let _ = write!(out, "pub #{ticket} still queued: no answer within {ANSWER_TIMEOUT_MS} ms (the MQTT thread is busy, e.g. connecting); it logs the result");
    })
}

/// Queues `work` for the MQTT thread and waits (bounded) for its answer, written to `out`.
fn ask(
    label: &str,
    work: Work,
    out: &mut impl fmt::Write,
    still_queued: impl Fn(u32, &mut dyn fmt::Write),
) -> Outcome {
    // Announce the wait before queueing: the answer may come before the request is queued.
    let ticket = {
        let mut awaited = lock(&AWAITED);
        awaited.last_ticket = awaited.last_ticket.wrapping_add(1).max(1);
        awaited.ticket = awaited.last_ticket;
        awaited.answered = Answered::Not;
        ANSWERED.reset();
        awaited.ticket
    };
    let queued = lock(&REQUESTS).push_back(Request { ticket, work }).is_ok();
    if !queued {
        lock(&AWAITED).ticket = 0;
        let _ = write!(
            out,
            "{label} #{ticket} rejected: request queue full ({QUEUE_DEPTH} waiting for the MQTT thread)"
        );
        return Outcome::Refused;
    }
    REQUEST_WAITING.give();
    let _ = ANSWERED.take(at_least_ms(ANSWER_TIMEOUT_MS));
    let (answered, text) = {
        let mut awaited = lock(&AWAITED);
        awaited.ticket = 0;
        let answered = core::mem::replace(&mut awaited.answered, Answered::Not);
        (answered, core::mem::take(&mut awaited.text))
    };
    match answered {
        Answered::Done => {
            let _ = out.write_str(text.as_str());
            Outcome::Done
        }
        Answered::Refused => {
            let _ = out.write_str(text.as_str());
            Outcome::Refused
        }
        Answered::Not => {
            still_queued(ticket, out);
            Outcome::Warning
        }
    }
}

/// The `cred` shell commands' entry point (control.c), on the shell's thread: the
/// subcommand (`argv[0]`) goes to the MQTT thread, which owns the credential sets; >= 0 done,
/// < 0 refused; `out` holds the answer.
#[no_mangle]
extern "C" fn app_cred_command(
    argc: usize,
    argv: *const *const c_char,
    out: *mut c_char,
    out_cap: usize,
) -> c_int {
    if argv.is_null() || argc == 0 {
        return -1;
    }
    // SAFETY: argv is the shell's argument vector of argc NUL-terminated strings, alive for
    // this call.
    let args = unsafe { core::slice::from_raw_parts(argv, argc) };
    let word = |index: usize| match args.get(index) {
        Some(&arg) if !arg.is_null() => {
            // SAFETY: each argv entry is a NUL-terminated string alive for this call.
            unsafe { CStr::from_ptr(arg) }
                .to_str()
                .unwrap_or("\u{fffd}")
        }
        _ => "",
    };
    let op = runtime_credentials::op_named(word(0));
    // SAFETY: control.c passes its static answer buffer of out_cap bytes, held under a mutex
    // for the duration of this call.
    unsafe { ask_cred(op, word(1), out.cast(), out_cap) }
}

/// A `cred` operation from the shell: >= 0 done, < 0 refused; the answer is written to
/// `out`, NUL-terminated.
///
/// # Safety
/// `out` must be valid for writes of `out_cap` bytes for the duration of the call.
unsafe fn ask_cred(op: c_int, arg: &str, out: *mut u8, out_cap: usize) -> c_int {
    if out.is_null() || out_cap == 0 {
        return -1;
    }
    // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes during this call.
    let buf = unsafe { core::slice::from_raw_parts_mut(out, out_cap) };
    let mut owned = String::new();
    let outcome = write_c_string(buf, |answer| {
        if owned.push_str(arg).is_err() {
            let _ = write!(answer, "argument longer than {CRED_ARG_MAX} bytes");
            return Outcome::Refused;
        }
        ask(
            "request",
            Work::Cred { op, arg: owned },
            answer,
            |_, out| {
                let _ = write!(out, "still queued: no answer within {ANSWER_TIMEOUT_MS} ms (the MQTT thread is busy, e.g. connecting); it logs the result");
            },
        )
    });
    match outcome {
        Outcome::Done | Outcome::Warning => 0,
        Outcome::Refused => -1,
    }
}

fn print_status(out: &mut impl fmt::Write) {
    {
        let status = lock(&STATUS);
        let (tls_version, cipher) = status.tls.unwrap_or(("none", "none"));
        let last_error = match status.last_error.as_str() {
            "" => "none",
            text => text,
        };
        let _ = write!(
            out,
            "state: {}\nbroker: {}:{}\ntls: {} {}\nin flight: {}\noutbox: {}\npublished: {}\nreconnects: {}\nlast error: {last_error}\n",
            status.state.as_str(),
            status.host.as_str(),
            status.port,
            tls_version,
            cipher,
            status.inflight,
            status.outbox,
            status.published,
            status.reconnects,
        );
    }
    match net::heap_free_bytes() {
        Some(free) => {
            let _ = writeln!(out, "heap free: {free}");
        }
        None => {
            let _ = writeln!(out, "heap free: not counted in this build");
        }
    }
    match net::tls_heap() {
        Some((used, peak, size)) => {
            let _ = write!(out, "tls heap: {used} used, peak {peak} of {size}");
        }
        None => {
            let _ = write!(out, "tls heap: not counted in this build");
        }
    }
}

/// The `mqtt` shell commands' entry point (`control.c`): 0 done, 1 a warning, -1 refused;
/// `out` holds the lines to print.
#[no_mangle]
extern "C" fn app_mqtt_command(
    argc: usize,
    argv: *const *const c_char,
    out: *mut u8,
    out_cap: usize,
) -> c_int {
    if out.is_null() || out_cap == 0 || argv.is_null() {
        return -1;
    }
    // SAFETY: control.c passes its static answer buffer of out_cap bytes, held under a mutex
    // for the duration of this call.
    let buf = unsafe { core::slice::from_raw_parts_mut(out, out_cap) };
    // SAFETY: argv is the shell's argument vector of argc NUL-terminated strings, alive for
    // this call.
    let raw = unsafe { core::slice::from_raw_parts(argv, argc) };
    let mut args: Vec<&str, 5> = Vec::new();
    for &arg in raw {
        if arg.is_null() {
            continue;
        }
        // SAFETY: each argv entry is a NUL-terminated string alive for this call.
        let text = unsafe { CStr::from_ptr(arg) }
            .to_str()
            .unwrap_or("\u{fffd}");
        if args.push(text).is_err() {
            break;
        }
    }
    let outcome = write_c_string(buf, |answer| run_command(&args, answer));
    match outcome {
        Outcome::Done => 0,
        Outcome::Warning => 1,
        Outcome::Refused => -1,
    }
}

//! `ContainerConfig.stop_signal` (the CRI's `Signal` enum, Kubernetes' container
//! `lifecycle.stopSignal`) to a signal number and back for `ContainerStatus.stop_signal`.
//! A signal from the CRI config overrides the image's StopSignal.

use criox_proto::v1::Signal;

use super::error::{Result, SpecError};

/// The CRI field this module reads.
pub const FIELD: &str = "stop_signal";

/// The fixed-number signals of Linux with their CRI names; aliases (SIGIOT, SIGCLD,
/// SIGPOLL) come after the signal they stand for, so that a number maps back to the
/// common name.
const FIXED: &[(Signal, i32)] = &[
    (Signal::Sighup, libc::SIGHUP),
    (Signal::Sigint, libc::SIGINT),
    (Signal::Sigquit, libc::SIGQUIT),
    (Signal::Sigill, libc::SIGILL),
    (Signal::Sigtrap, libc::SIGTRAP),
    (Signal::Sigabrt, libc::SIGABRT),
    (Signal::Sigiot, libc::SIGIOT),
    (Signal::Sigbus, libc::SIGBUS),
    (Signal::Sigfpe, libc::SIGFPE),
    (Signal::Sigkill, libc::SIGKILL),
    (Signal::Sigusr1, libc::SIGUSR1),
    (Signal::Sigsegv, libc::SIGSEGV),
    (Signal::Sigusr2, libc::SIGUSR2),
    (Signal::Sigpipe, libc::SIGPIPE),
    (Signal::Sigalrm, libc::SIGALRM),
    (Signal::Sigterm, libc::SIGTERM),
    (Signal::Sigstkflt, libc::SIGSTKFLT),
    (Signal::Sigchld, libc::SIGCHLD),
    (Signal::Sigcld, libc::SIGCHLD),
    (Signal::Sigcont, libc::SIGCONT),
    (Signal::Sigstop, libc::SIGSTOP),
    (Signal::Sigtstp, libc::SIGTSTP),
    (Signal::Sigttin, libc::SIGTTIN),
    (Signal::Sigttou, libc::SIGTTOU),
    (Signal::Sigurg, libc::SIGURG),
    (Signal::Sigxcpu, libc::SIGXCPU),
    (Signal::Sigxfsz, libc::SIGXFSZ),
    (Signal::Sigvtalrm, libc::SIGVTALRM),
    (Signal::Sigprof, libc::SIGPROF),
    (Signal::Sigwinch, libc::SIGWINCH),
    (Signal::Sigio, libc::SIGIO),
    (Signal::Sigpoll, libc::SIGPOLL),
    (Signal::Sigpwr, libc::SIGPWR),
    (Signal::Sigsys, libc::SIGSYS),
];

/// The enum numbers of SIGRTMIN, SIGRTMIN+1 … SIGRTMIN+15, then SIGRTMAX-14 … SIGRTMAX.
const RTMIN: i32 = Signal::Sigrtmin as i32;
const RTMAX: i32 = Signal::Sigrtmax as i32;
const RTMIN_STEPS: i32 = 15;

/// The signal number the CRI value names; `None` for SIGNAL_RUNTIME_DEFAULT (the image's
/// StopSignal, else SIGTERM). A value outside the enum is an error naming the field.
pub fn from_cri(value: i32) -> Result<Option<i32>> {
    let unknown = || SpecError::invalid(FIELD, format!("unknown signal {value}"));
    let signal = Signal::try_from(value).map_err(|_| unknown())?;
    if signal == Signal::RuntimeDefault {
        return Ok(None);
    }
    if let Some((_, n)) = FIXED.iter().find(|(s, _)| *s == signal) {
        return Ok(Some(*n));
    }
    let n = if value - RTMIN <= RTMIN_STEPS {
        libc::SIGRTMIN() + (value - RTMIN)
    } else {
        libc::SIGRTMAX() - (RTMAX - value)
    };
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
        Ok(Some(n))
    } else {
        Err(unknown())
    }
}

/// The CRI name of a signal number, for ContainerStatus; RUNTIME_DEFAULT when the number
/// has none.
pub fn to_cri(number: i32) -> Signal {
    if let Some((s, _)) = FIXED.iter().find(|(_, n)| *n == number) {
        return *s;
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let value = if (min..=min + RTMIN_STEPS).contains(&number) {
        RTMIN + (number - min)
    } else if (max - (RTMAX - RTMIN - RTMIN_STEPS - 1)..=max).contains(&number) {
        RTMAX - (max - number)
    } else {
        return Signal::RuntimeDefault;
    };
    Signal::try_from(value).unwrap_or(Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cri_signal_has_a_number_that_names_it_back() {
        for value in 1..=RTMAX {
            let n = from_cri(value).unwrap().unwrap();
            let back = to_cri(n) as i32;
            let same = back == value
                || matches!(
                    Signal::try_from(value).unwrap(),
                    Signal::Sigiot | Signal::Sigcld | Signal::Sigpoll
                );
            assert!(same, "{value} -> {n} -> {back}");
        }
        assert_eq!(
            from_cri(Signal::Sigusr1 as i32).unwrap(),
            Some(libc::SIGUSR1)
        );
        assert_eq!(
            from_cri(Signal::Sigrtmin as i32).unwrap(),
            Some(libc::SIGRTMIN())
        );
        assert_eq!(
            from_cri(Signal::Sigrtmax as i32).unwrap(),
            Some(libc::SIGRTMAX())
        );
        assert_eq!(
            from_cri(Signal::Sigrtmaxminus1 as i32).unwrap(),
            Some(libc::SIGRTMAX() - 1)
        );
        assert_eq!(from_cri(0).unwrap(), None);
        assert_eq!(to_cri(libc::SIGTERM), Signal::Sigterm);
    }

    #[test]
    fn an_unknown_value_names_the_field() {
        let e = from_cri(99).unwrap_err().to_string();
        assert!(e.contains("stop_signal") && e.contains("99"), "{e}");
    }
}

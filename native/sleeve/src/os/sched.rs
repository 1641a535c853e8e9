//! Scheduling priority of the packet threads.
//!
//! Kernel VXLAN does its work in softirq context, ahead of every task; the sleeve's threads are
//! ordinary tasks, and on a busy host each hop (TAP -> thread -> UDP, UDP -> thread -> TAP)
//! waited in the run queue about as long as it ran (measured with /proc/<tid>/schedstat on a
//! loaded 2-core machine). A lower nice value for the packet threads only shortens that wait.

use std::io;

/// Sets the calling thread's nice value (Linux: a thread is a task with its own priority).
/// Lowering it needs CAP_SYS_NICE (or RLIMIT_NICE); the caller decides what a refusal means.
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority only reads its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_the_nice_value_is_always_allowed() {
        // On a thread of its own, so the test harness keeps its priority.
        std::thread::spawn(|| {
            set_current_thread_nice(5).unwrap();
            // SAFETY: getpriority only reads its integer arguments.
            let got = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _) };
            assert_eq!(got, 5);
        })
        .join()
        .unwrap();
    }
}

//! Root integration tests for the pod init of a shared PID namespace (`kinglet_netns::pidns`).
//!
//! Why `harness = false`: `pod_init_main` must run at the very top of `main`, while the process
//! is single-threaded, exactly as in the `kinglet` binary. libtest cannot offer that (its `main`
//! is not ours, tests run on spawned threads, and it prints to stdout, which is the helper's reply
//! channel). So this target has its own `main`: invoked as `<test-binary> pod-init --pin PATH` it
//! *is* the helper (the same `pod_init_args` + `pod_init_main` lines the daemon's `main` uses);
//! otherwise it runs the tests below in order on the main thread, with libtest-like output,
//! `--list`, and name filters (`--exact` too). `spawn_pod_init` is given this binary's own path,
//! so the real command line and reply protocol are exercised.
//!
//! The test process makes itself a child subreaper so that pod inits (whose helper parent exits)
//! are reparented to it: it can then check exit statuses and that nothing is left unreaped.
//! Without root every test fails.

mod common;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use common::{mounts_under, ns_id, ns_link_text, own_ns, require_root, run};
use kinglet_netns::{
    pod_init_args, pod_init_main, spawn_pod_init, spawn_tied_pod_init, stop_pod_init,
    unpin_namespaces, NetnsError, NsKind,
};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const TESTS: &[(&str, fn())] = &[
    (
        "pod_init_is_pid_1_of_a_pinned_pid_namespace",
        pod_init_is_pid_1_of_a_pinned_pid_namespace,
    ),
    (
        "pod_init_reaps_orphans_in_its_namespace",
        pod_init_reaps_orphans_in_its_namespace,
    ),
    (
        "sigterm_makes_pod_init_exit_0_other_signals_do_not",
        sigterm_makes_pod_init_exit_0_other_signals_do_not,
    ),
    (
        "stop_leaves_a_process_that_is_not_the_pod_init_alone",
        stop_leaves_a_process_that_is_not_the_pod_init_alone,
    ),
    (
        "helper_failures_are_reported_and_leave_nothing_behind",
        helper_failures_are_reported_and_leave_nothing_behind,
    ),
    (
        "a_tied_pod_init_exits_when_its_tie_is_dropped",
        a_tied_pod_init_exits_when_its_tie_is_dropped,
    ),
    ("a_released_pod_init_lives_on", a_released_pod_init_lives_on),
];

fn main() -> ExitCode {
    // Exactly what the daemon's `main` does first.
    if let Some(pin) = pod_init_args(std::env::args_os()) {
        pod_init_main(&pin)
    }
    run_tests()
}

// --- the tests -------------------------------------------------------------------------------

fn pod_init_is_pid_1_of_a_pinned_pid_namespace() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut init = PodInit::spawn(tmp.path());
    let (pid, pin) = (init.pid, init.pin.clone());

    // PID 1 of a new namespace, pinned at `pin`, reparented away from the helper.
    let status = proc_status(pid).expect("pod init running");
    assert_eq!(field(&status, "NSpid"), format!("{pid}\t1"), "{status}");
    assert_eq!(field(&status, "PPid"), std::process::id().to_string());
    let pinned = ns_id(&pin);
    assert_eq!(ns_id(&PathBuf::from(format!("/proc/{pid}/ns/pid"))), pinned);
    assert_ne!(pinned, own_ns(NsKind::Pid));
    assert_eq!(mounts_under(tmp.path()), std::slice::from_ref(&pin));

    // A pause process: stdio on /dev/null and nothing else open, cwd `/`. (Its blocked signal
    // mask cannot be read from `SigBlk`: while in sigwait the kernel shows the waited-for signals
    // as unblocked. The signal test below checks the behaviour instead.)
    // The helper reports the pid right after the fork, so the pod init may still be closing
    // what it inherited: give it a moment before checking.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut fds = open_fds(pid);
    while fds.len() != 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        fds = open_fds(pid);
    }
    assert_eq!(fds.len(), 3, "pod init holds extra fds: {fds:?}");
    assert!(fds.iter().all(|t| t == Path::new("/dev/null")), "{fds:?}");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"),
        Path::new("/")
    );
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm"),
        "pod-init\n"
    );

    // Another process can join the pinned namespace, where PID 1 exists and it is not.
    let out = run(Command::new("nsenter")
        .arg(format!("--pid={}", pin.display()))
        .args(["sh", "-c", "echo $$; readlink /proc/self/ns/pid"]));
    let lines: Vec<&str> = out.lines().collect();
    let inner_pid: u32 = lines[0].parse().expect("pid");
    assert!(inner_pid > 1, "joined process is pid {inner_pid}");
    assert_eq!(lines[1], ns_link_text(NsKind::Pid, pinned));

    // Stop: the process is killed (we reap it as subreaper) and the pin is gone.
    stop_pod_init(pid, &pin).expect("stop");
    assert_eq!(
        init.reap(),
        WaitStatus::Signaled(init.nix_pid(), Signal::SIGKILL, false)
    );
    assert!(proc_status(pid).is_none(), "pod init still exists");
    assert!(!pin.exists(), "pin left behind");
    assert_eq!(mounts_under(tmp.path()), Vec::<PathBuf>::new());
    stop_pod_init(pid, &pin).expect("stopping twice is fine");
}

fn pod_init_reaps_orphans_in_its_namespace() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut init = PodInit::spawn(tmp.path());
    let (pid, pin) = (init.pid, init.pin.clone());

    // `sh` exits at once, orphaning `sleep`, which the kernel hands to the namespace's PID 1.
    // (nsenter forks by itself when entering a PID namespace.)
    run(Command::new("nsenter")
        .arg(format!("--pid={}", pin.display()))
        .args(["sh", "-c", "sleep 1 >/dev/null 2>&1 &"]));
    let adopted = children_of(pid);
    assert_eq!(
        adopted.len(),
        1,
        "orphan not reparented to the pod init: {adopted:?}"
    );
    // Once it exits, the pod init must reap it: no zombie child may remain.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !children_of(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "pod init did not reap {adopted:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(proc_status(pid).is_some(), "pod init exited on SIGCHLD");

    stop_pod_init(pid, &pin).expect("stop");
    init.reap();
}

fn sigterm_makes_pod_init_exit_0_other_signals_do_not() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut init = PodInit::spawn(tmp.path());
    let (pid, pin, nix_pid) = (init.pid, init.pin.clone(), init.nix_pid());

    for sig in [
        Signal::SIGUSR1,
        Signal::SIGCHLD,
        Signal::SIGPIPE,
        Signal::SIGALRM,
    ] {
        kill(nix_pid, sig).expect("signal");
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        init.try_reap(),
        WaitStatus::StillAlive,
        "pod init died of an ignored signal"
    );

    kill(nix_pid, Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(init.reap(), WaitStatus::Exited(nix_pid, 0));

    // The init is gone but the pin still names the (now dead) namespace; stop only unpins.
    assert!(pin.exists());
    stop_pod_init(pid, &pin).expect("stop after exit");
    assert!(!pin.exists());
    assert_eq!(mounts_under(tmp.path()), Vec::<PathBuf>::new());
}

fn stop_leaves_a_process_that_is_not_the_pod_init_alone() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut init = PodInit::spawn(tmp.path());
    let pin = init.pin.clone();
    let mut bystander = Command::new("sleep").arg("30").spawn().expect("sleep");

    // As if `pid` had been reused by an unrelated process: it must not be killed.
    stop_pod_init(bystander.id(), &pin).expect("stop with a foreign pid");
    thread::sleep(Duration::from_millis(100));
    assert!(
        bystander.try_wait().expect("try_wait").is_none(),
        "foreign process was killed"
    );
    assert!(!pin.exists(), "pin not removed");
    // The real pod init was not touched either (it is merely unpinned now).
    assert_eq!(init.try_reap(), WaitStatus::StillAlive);

    bystander.kill().expect("kill sleep");
    bystander.wait().expect("reap sleep");
    // `init` is killed and reaped on drop.
}

fn helper_failures_are_reported_and_leave_nothing_behind() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");

    // The pin's directory does not exist.
    let pin = tmp.path().join("missing").join("pid");
    let err = spawn_pod_init(&self_exe(), &pin).expect_err("must fail");
    match &err {
        NetnsError::PodInitFailed { pin: p, message } => {
            assert_eq!(p, &pin);
            assert!(
                message.contains("pid namespace pin file")
                    && message.contains(&pin.display().to_string()),
                "{message}"
            );
        }
        other => panic!("unexpected error {other:?}"),
    }

    // The pin already exists: it is not ours, so it must stay as it was.
    let pin = tmp.path().join("pid");
    fs::write(&pin, "someone else's").expect("write");
    let err = spawn_pod_init(&self_exe(), &pin).expect_err("must fail");
    assert!(matches!(err, NetnsError::PodInitFailed { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&pin).expect("read"), "someone else's");
    assert_eq!(mounts_under(tmp.path()), Vec::<PathBuf>::new());

    // No pod init was left running: as subreaper we would have inherited it.
    assert_eq!(
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
        Err(Errno::ECHILD),
        "a process was left behind"
    );
}

fn a_tied_pod_init_exits_when_its_tie_is_dropped() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Dropped at once: the pod init may not even have armed its tie yet (the helper replies
    // right after the fork), and must exit all the same.
    let pin = tmp.path().join("pid");
    let (pid, tie) = spawn_tied_pod_init(&self_exe(), &pin, None).expect("spawn tied pod init");
    let mut init = PodInit::adopt(pid, pin.clone());
    drop(tie);
    assert_eq!(
        init.reap_within(Duration::from_secs(5)),
        WaitStatus::Exited(init.nix_pid(), 0),
        "the pod init must exit when its tie is cut"
    );

    // Dropped after it settled (holding stdio and the tie only), while it waits in sigwait.
    stop_pod_init(pid, &pin).expect("unpin");
    let (pid, tie) = spawn_tied_pod_init(&self_exe(), &pin, None).expect("spawn tied pod init");
    let mut init = PodInit::adopt(pid, pin.clone());
    wait_for_fds(pid, 4);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(init.try_reap(), WaitStatus::StillAlive, "exited while tied");
    drop(tie);
    assert_eq!(
        init.reap_within(Duration::from_secs(5)),
        WaitStatus::Exited(init.nix_pid(), 0)
    );
}

fn a_released_pod_init_lives_on() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pin = tmp.path().join("pid");
    let (pid, tie) = spawn_tied_pod_init(&self_exe(), &pin, None).expect("spawn tied pod init");
    let mut init = PodInit::adopt(pid, pin.clone());
    tie.release().expect("release");
    // The tie is closed once read: only stdio on /dev/null is left.
    let fds = wait_for_fds(pid, 3);
    assert!(fds.iter().all(|t| t == Path::new("/dev/null")), "{fds:?}");
    // A stray SIGIO after the release changes nothing.
    kill(init.nix_pid(), Signal::SIGIO).expect("SIGIO");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        init.try_reap(),
        WaitStatus::StillAlive,
        "released init exited"
    );
    stop_pod_init(pid, &pin).expect("stop");
    assert_eq!(
        init.reap(),
        WaitStatus::Signaled(init.nix_pid(), Signal::SIGKILL, false)
    );
}

// --- helpers ---------------------------------------------------------------------------------

/// Wait (up to 5 s) until `pid` holds exactly `n` descriptors; returns their targets.
fn wait_for_fds(pid: u32, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fds = open_fds(pid);
    while fds.len() != n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        fds = open_fds(pid);
    }
    assert_eq!(fds.len(), n, "pod init {pid} holds {fds:?}");
    fds
}

/// A pod init started for a test, at `<dir>/pid`. It is our child (we are a subreaper), so its
/// pid cannot be reused before we reap it: on drop, an unreaped init is SIGKILLed and reaped and
/// the pin removed, so a failing test leaves nothing behind for the next one.
struct PodInit {
    pid: u32,
    pin: PathBuf,
    reaped: bool,
}

impl PodInit {
    fn spawn(dir: &Path) -> Self {
        let pin = dir.join("pid");
        let pid = spawn_pod_init(&self_exe(), &pin).expect("spawn pod init");
        Self::adopt(pid, pin)
    }

    fn adopt(pid: u32, pin: PathBuf) -> Self {
        PodInit {
            pid,
            pin,
            reaped: false,
        }
    }

    /// Wait up to `within` for the pod init to exit and reap it; `StillAlive` if it did not.
    fn reap_within(&mut self, within: Duration) -> WaitStatus {
        let deadline = Instant::now() + within;
        loop {
            let status = self.try_reap();
            if status != WaitStatus::StillAlive || Instant::now() > deadline {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.pid).expect("pid fits i32"))
    }

    /// Wait for the pod init to exit and reap it.
    fn reap(&mut self) -> WaitStatus {
        let status = waitpid(self.nix_pid(), None).expect("waitpid pod init");
        self.reaped = true;
        status
    }

    /// Reap the pod init if it has exited.
    fn try_reap(&mut self) -> WaitStatus {
        let status = waitpid(self.nix_pid(), Some(WaitPidFlag::WNOHANG)).expect("waitpid pod init");
        self.reaped = status != WaitStatus::StillAlive;
        status
    }
}

impl Drop for PodInit {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.nix_pid(), Signal::SIGKILL);
            let _ = waitpid(self.nix_pid(), None);
        }
        if let Some(dir) = self.pin.parent() {
            let _ = unpin_namespaces(dir);
        }
    }
}

fn self_exe() -> PathBuf {
    std::env::current_exe().expect("current_exe")
}

fn proc_status(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in status"))
        .trim()
        .to_owned()
}

fn open_fds(pid: u32) -> Vec<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        // An fd closed between the listing and its readlink is not open.
        .filter_map(|e| fs::read_link(e.expect("entry").path()).ok())
        .collect()
}

/// Host pids of all processes (including zombies) whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let want = parent.to_string();
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_status(pid).is_some_and(|s| field(&s, "PPid") == want))
        .collect()
}

// --- a minimal test runner -------------------------------------------------------------------

fn run_tests() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--test-threads" | "--format" | "--color" | "--skip" | "-Z" => {
                iter.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a),
        }
    }
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();

    // Single-threaded here; orphaned pod inits come back to us.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");

    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let result = panic::catch_unwind(AssertUnwindSafe(test));
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        if result.is_err() {
            failed.push(*name);
        }
    }
    let filtered = TESTS.len() - selected.len();
    if failed.is_empty() {
        println!(
            "\ntest result: ok. {} passed; 0 failed; {filtered} filtered out\n",
            selected.len()
        );
        ExitCode::SUCCESS
    } else {
        println!("\nfailures:\n    {}", failed.join("\n    "));
        println!(
            "\ntest result: FAILED. {} passed; {} failed; {filtered} filtered out\n",
            selected.len() - failed.len(),
            failed.len()
        );
        ExitCode::FAILURE
    }
}

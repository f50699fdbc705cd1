//! The libcontainer executor used for every container process: libcontainer's default exec,
//! after restoring the signal state a process expects to start with.
//!
//! For processes exec'd into a running container (CRI ExecSync), libcontainer's tenant builder
//! drops the container's seccomp filter; the executor loads it itself, right before `execve`.
//! At that point privileges are already dropped, so when the process lacks CAP_SYS_ADMIN the
//! kernel only accepts a filter under no_new_privs: the executor then sets it — an exec'd
//! command of a seccomp-confined container is never left unconfined.

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use crate::sys;

#[derive(Clone, Default)]
pub(crate) struct KingletExecutor {
    /// A filter to load before exec (tenant processes only).
    pub seccomp: Option<LinuxSeccomp>,
    /// The size of the process's terminal (stdin), set before exec: libcontainer does not
    /// apply the OCI `consoleSize`, and a command must see its client's size from the start.
    pub console_size: Option<(u16, u16)>,
    /// For a container in a pod user namespace: join it before exec (tenant processes only).
    pub userns: Option<crate::userns_exec::UserJoin>,
}

impl Executor for KingletExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        sys::reset_signals_for_exec();
        if let Some((cols, rows)) = self.console_size {
            // Best effort: a failure leaves the terminal at its default size.
            let _ = sys::set_winsize(&std::io::stdin(), cols, rows);
        }
        if let Some(join) = &self.userns {
            join.enter()?;
        }
        if let Some(filter) = &self.seccomp {
            if libcontainer::seccomp::initialize_seccomp(filter).is_err() {
                sys::set_no_new_privs().map_err(|e| ExecutorError::Other(e.to_string()))?;
                libcontainer::seccomp::initialize_seccomp(filter)
                    .map_err(|e| ExecutorError::Other(format!("load seccomp filter: {e}")))?;
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

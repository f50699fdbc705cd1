//! The crate's error type.
//!
//! Each variant names the step that failed and carries the namespace kind and path (or pid) it
//! was working on; the kernel's error is the `#[source]` and is not repeated in the message.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::ns::NsKind;

/// Errors of pod namespace pinning and of the pod init process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// A hostname was requested without a new UTS namespace to set it in.
    #[error("hostname {hostname:?} requested without a new uts namespace")]
    HostnameWithoutUts { hostname: String },

    /// The pin directory could not be created.
    #[error("failed to create namespace pin directory {path}")]
    CreatePinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The dedicated pinning thread could not be started.
    #[error("failed to start the namespace pinning thread for {dir}")]
    SpawnPinThread {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The dedicated pinning thread panicked (its pins were rolled back while unwinding).
    #[error("namespace pinning thread for {dir} panicked")]
    PinThreadPanicked { dir: PathBuf },

    /// `unshare(2)` of one namespace kind failed.
    #[error("failed to create a new {kind} namespace for {path}")]
    Unshare {
        kind: NsKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Setting the hostname in the new UTS namespace failed.
    #[error("failed to set hostname {hostname:?} in the new uts namespace for {path}")]
    SetHostname {
        hostname: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Bringing an interface up in the new network namespace failed.
    #[error("failed to bring up {interface} in the new net namespace for {path}")]
    InterfaceUp {
        interface: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A step of making a pod's user namespace failed.
    #[error("failed to {step} for the pod user namespace {path}")]
    UserNamespace {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An idmapped mount (a copy of `source_path` seen through a pod's user namespace) failed.
    #[error("failed to mount {source_path} idmapped at {path}")]
    IdmapMount {
        source_path: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The empty file a namespace is bind-mounted onto could not be created (it may exist).
    #[error("failed to create {kind} namespace pin file {path}")]
    CreatePinFile {
        kind: NsKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Bind-mounting the namespace onto its pin file failed.
    #[error("failed to bind-mount the {kind} namespace {source_path} onto {path}")]
    BindMount {
        kind: NsKind,
        source_path: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Unmounting a pin failed.
    #[error("failed to unmount {kind} namespace pin {path}")]
    Unmount {
        kind: NsKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Removing an (unmounted) pin file failed.
    #[error("failed to remove {kind} namespace pin file {path}")]
    RemovePinFile {
        kind: NsKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Removing the emptied pin directory failed.
    #[error("failed to remove namespace pin directory {path}")]
    RemovePinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A pod init step in the `pod-init` helper itself failed (reported there, on its stdout).
    #[error("pod init for {pin}: failed to {step}")]
    PodInitStep {
        step: &'static str,
        pin: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The `pod-init` helper process could not be run.
    #[error("failed to run the pod init helper {exe} for {pin}")]
    SpawnPodInit {
        exe: PathBuf,
        pin: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The `pod-init` helper ran and reported a failure.
    #[error("pod init helper for {pin} failed: {message}")]
    PodInitFailed { pin: PathBuf, message: String },

    /// The `pod-init` helper's reply was not `ok <pid>` / `error: <message>`.
    #[error("pod init helper for {pin} gave an unexpected reply {reply:?} ({status})")]
    PodInitReply {
        pin: PathBuf,
        status: ExitStatus,
        reply: String,
    },

    /// Reading the namespace identity of a file failed.
    #[error("failed to identify the namespace at {path}")]
    NsIdentity {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Releasing the pod init's tie failed: it had exited already (its pid namespace is gone).
    #[error(
        "failed to release pod init {pid} (pin {pin}): it exited before its sandbox was recorded"
    )]
    ReleasePodInit {
        pid: u32,
        pin: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Signalling the pod init failed.
    #[error("failed to kill pod init {pid} (pin {pin})")]
    KillPodInit {
        pid: u32,
        pin: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The pod init was sent SIGKILL but had not exited when we stopped waiting.
    #[error("pod init {pid} (pin {pin}) did not exit within {waited:?} of SIGKILL")]
    PodInitLingers {
        pid: u32,
        pin: PathBuf,
        waited: Duration,
    },

    /// A network setting is unusable.
    #[error("invalid network setting {field} = {value:?}: {reason}")]
    InvalidNetworkConfig {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A pod CIDR could not be parsed or is too small.
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: &'static str },

    /// Reading or writing an address allocation file failed.
    #[error("address allocation {path}")]
    Ipam {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Every address of the pod network is allocated.
    #[error("no free address left in pod network {cidr} for pod {pod}")]
    AddressesExhausted {
        cidr: crate::ipam::Ipv4Cidr,
        pod: String,
    },

    /// The hostPort is already mapped by another pod.
    #[error("hostPort {mapping} of pod {pod} is already used by pod {other}")]
    PortConflict {
        mapping: String,
        pod: String,
        other: String,
    },

    /// Reading or writing a pod's network state file failed.
    #[error("pod network state {path}")]
    PodState {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing a sysctl failed.
    #[error("failed to set sysctl {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A pod sysctl cannot be set in the pod's namespaces.
    #[error("sysctl {key:?} {reason}")]
    InvalidSysctl { key: String, reason: &'static str },

    /// Writing a pod sysctl inside the pod's namespaces failed (unknown key, bad value).
    #[error("failed to set sysctl {key:?} to {value:?} in the pod's namespaces ({path})")]
    PodSysctl {
        key: String,
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `nft` could not be run.
    #[error("failed to run nft for table {table}")]
    Nft {
        table: String,
        #[source]
        source: io::Error,
    },

    /// `nft` refused a change to Kinglet's table.
    #[error("nft refused a change to table {table}: {message}")]
    NftRejected { table: String, message: String },

    /// A netlink request failed.
    #[error("netlink: failed to {step} {link}")]
    Netlink {
        step: &'static str,
        link: String,
        #[source]
        source: io::Error,
    },

    /// The dedicated netlink thread could not do its setup step.
    #[error("netlink thread: failed to {step} (netns {netns:?})")]
    NetlinkThread {
        step: &'static str,
        netns: Option<PathBuf>,
        #[source]
        source: io::Error,
    },

    /// A CNI configuration list is unusable.
    #[error("CNI configuration {path}: {reason}")]
    CniConfig { path: PathBuf, reason: String },

    /// A CNI plugin failed (its own message), hung, or could not be run.
    #[error("CNI plugin {plugin} {command} for pod {pod}: {message}")]
    CniPlugin {
        plugin: String,
        command: &'static str,
        pod: String,
        message: String,
    },
}

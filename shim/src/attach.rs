//! Attach clients of a running container, served from the shim's single-threaded poll loop.
//!
//! Owns the container's input side: the write end of its stdin pipe (containers created with
//! `stdin`), or the terminal master (with `tty`, where input and resizes go). Output the shim
//! reads from the container is copied to every attached client besides the CRI log; a client
//! that falls more than [`MAX_BACKLOG`] behind is dropped rather than ever blocking the loop.
//! The wire format is in [`crate::protocol::CMD_ATTACH`].

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::log::Stream;
use crate::protocol::{
    next_frame, push_frame, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF, FRAME_STDOUT,
};

/// Output queued for one client before it is dropped.
const MAX_BACKLOG: usize = 8 << 20;
/// How long one write to the container's stdin may wait for room.
const STDIN_WAIT: Duration = Duration::from_secs(1);

struct Client {
    sock: UnixStream,
    /// Whether this client sends input (its end of input counts for `stdin_once`).
    stdin: bool,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The client will send nothing more (it shut its side); output may still flow to it.
    read_closed: bool,
    dead: bool,
}

/// The container's input and its attached clients.
pub struct Attach {
    clients: Vec<Client>,
    /// Where client input goes: the stdin pipe or the terminal master; `None` once closed.
    input: Option<OwnedFd>,
    /// The terminal master, for resizes (tty containers).
    tty: Option<OwnedFd>,
    stdin_once: bool,
}

impl Attach {
    pub fn new(input: Option<OwnedFd>, tty: Option<OwnedFd>, stdin_once: bool) -> Attach {
        Attach {
            clients: Vec::new(),
            input,
            tty,
            stdin_once,
        }
    }

    /// Take over a control connection that asked to attach; `ok` has been written to it.
    pub fn add(&mut self, sock: UnixStream, stdin: bool) {
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        self.clients.push(Client {
            sock,
            stdin,
            inbuf: Vec::new(),
            out: Vec::new(),
            read_closed: false,
            dead: false,
        });
    }

    /// Add every client to a poll set; returns their indices in it.
    pub fn push_pollfds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> Vec<usize> {
        self.clients
            .iter()
            .map(|c| {
                let mut flags = PollFlags::empty();
                if !c.read_closed {
                    flags |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.sock.as_fd(), flags));
                fds.len() - 1
            })
            .collect()
    }

    /// Serve the clients whose descriptors were ready (`ready[i]` for client `i`).
    pub fn serve(&mut self, ready: &[bool]) {
        for i in 0..self.clients.len() {
            if ready.get(i).copied().unwrap_or(false) {
                let c = &mut self.clients[i];
                if c.read_closed && c.out.is_empty() {
                    // Neither readable nor writable wanted: a hang-up or an error.
                    c.dead = true;
                    continue;
                }
                self.read_client(i);
                self.flush_client(i);
            }
        }
        self.clients.retain(|c| !c.dead);
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        let mut eof = false;
        while !self.clients[i].read_closed {
            let c = &mut self.clients[i];
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&buf[..n]);
                    // Handle frames as they complete, so the buffer holds at most one.
                    if !self.handle_frames(i) {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
        // Frames that came before the end are handled first.
        if eof {
            self.clients[i].read_closed = true;
            let had_stdin = self.clients[i].stdin;
            self.stdin_ended(i, had_stdin);
        }
    }

    /// Act on the complete frames in client `i`'s buffer; false (and the client dropped)
    /// when one announces more than [`MAX_FRAME`] bytes.
    fn handle_frames(&mut self, i: usize) -> bool {
        loop {
            let frame = match next_frame(&mut self.clients[i].inbuf) {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "attach client dropped");
                    self.clients[i].dead = true;
                    return false;
                }
            };
            match frame {
                (FRAME_STDIN, payload) => self.write_input(&payload),
                (FRAME_STDIN_EOF, _) => self.stdin_ended(i, true),
                (FRAME_RESIZE, payload) if payload.len() == 4 => {
                    let cols = u16::from_be_bytes([payload[0], payload[1]]);
                    let rows = u16::from_be_bytes([payload[2], payload[3]]);
                    if let Some(t) = &self.tty {
                        if let Err(e) = crate::sys::set_winsize(t, cols, rows) {
                            tracing::debug!(err = %e, "resize failed");
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A client's input ended: a `stdin_once` container without a terminal loses its stdin;
    /// otherwise the client is detached (as containerd does).
    fn stdin_ended(&mut self, i: usize, had_stdin: bool) {
        if !had_stdin {
            return;
        }
        // Counted once per client.
        self.clients[i].stdin = false;
        if self.stdin_once && self.tty.is_none() {
            self.input = None;
        } else {
            self.clients[i].dead = true;
        }
    }

    fn write_input(&mut self, mut data: &[u8]) {
        let Some(fd) = &self.input else { return };
        let deadline = Instant::now() + STDIN_WAIT;
        while !data.is_empty() {
            match nix::unistd::write(fd, data) {
                Ok(n) => data = &data[n..],
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(dropped = data.len(), "container stdin full");
                        return;
                    }
                    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                Err(_) => {
                    // The reading side is gone (the container closed its stdin).
                    self.input = None;
                    return;
                }
            }
        }
    }

    fn flush_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.out.is_empty() && !c.dead {
            match c.sock.write(&c.out) {
                Ok(0) => c.dead = true,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => c.dead = true,
            }
        }
    }

    /// Copy container output to every client.
    pub fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let ty = match stream {
            Stream::Stdout => FRAME_STDOUT,
            Stream::Stderr => FRAME_STDERR,
        };
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            push_frame(&mut c.out, ty, data);
            if c.out.len() > MAX_BACKLOG {
                tracing::warn!("attach client too slow; detached");
                c.dead = true;
                continue;
            }
            self.flush_client(i);
        }
        self.clients.retain(|c| !c.dead);
    }

    /// The container exited: give each client what is queued (briefly), then close them all.
    pub fn finish(&mut self) {
        for c in &mut self.clients {
            let _ = c.sock.set_nonblocking(false);
            let _ = c.sock.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.sock.write_all(&c.out);
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        self.clients.clear();
        self.input = None;
    }
}

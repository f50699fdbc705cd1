use super::*;
use k8s_openapi::api::core::v1::{Pod, PodSpec};

fn service(json: &str) -> Service {
    serde_json::from_str(json).unwrap()
}

fn pod(name: &str, ip: &str, ready: bool, host: Option<(&str, &str)>) -> Pod {
    let mut p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "pg", "containerPort": 5432}]}]},
        "status": {"podIP": ip, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .unwrap();
    if let Some((h, sub)) = host {
        let spec: &mut PodSpec = p.spec.as_mut().unwrap();
        spec.hostname = Some(h.into());
        spec.subdomain = Some(sub.into());
    }
    p
}

fn ask(z: &Zone, name: &str, t: RecordType) -> Message {
    match z.answer(&query(Name::from_ascii(name).unwrap(), t)) {
        Answer::Local { msg, .. } => msg,
        Answer::Forward => panic!("{name} {t} forwarded"),
    }
}

fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn cluster() -> Zone {
    let web = service(
        r#"{"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80}, {"port": 81}]}}"#,
    );
    let db = service(
        r#"{"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432, "targetPort": "pg"}]}}"#,
    );
    let ext = service(
        r#"{"metadata": {"name": "ext", "namespace": "other"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}}"#,
    );
    let pods = [
        pod("db-0", "10.85.0.5", true, Some(("db-0", "db"))),
        pod("db-1", "10.85.0.6", true, None),
        pod("db-2", "10.85.0.7", false, None),
        // Its subdomain names another Service: no hostname in this one's slice.
        pod("db-3", "10.85.0.8", true, Some(("db-3", "elsewhere"))),
    ];
    let slices = crate::endpoints::slices(&db, &pods);
    Zone::build("cluster.local", &[web, db, ext], &slices)
}

#[test]
fn cluster_ip_service_has_its_address_and_srv_for_named_ports() {
    let z = cluster();
    let m = ask(&z, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addrs(&m), ["10.96.0.10"]);
    assert_eq!(m.answers[0].ttl, TTL);
    // Case does not matter.
    assert_eq!(
        addrs(&ask(&z, "WEB.Default.svc.cluster.local.", RecordType::A)),
        ["10.96.0.10"]
    );
    let srv = ask(
        &z,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let RData::SRV(s) = &srv.answers[0].data else {
        panic!("{srv:?}")
    };
    assert_eq!(
        (s.port, s.target.to_ascii().as_str()),
        (80, "web.default.svc.cluster.local.")
    );
    let mut extra = srv.clone();
    extra.answers = srv.additionals.clone();
    assert_eq!(addrs(&extra), ["10.96.0.10"]);
    // The unnamed port has no SRV name.
    let none = ask(
        &z,
        "_81._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn headless_service_lists_ready_endpoints_and_their_hostnames() {
    let z = cluster();
    let m = ask(&z, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(addrs(&m), ["10.85.0.5", "10.85.0.6", "10.85.0.8"]);
    // hostname + subdomain = this Service: a name of its own.
    assert_eq!(
        addrs(&ask(
            &z,
            "db-0.db.default.svc.cluster.local.",
            RecordType::A
        )),
        ["10.85.0.5"]
    );
    // Others by dashed address; the pod whose subdomain is another Service too.
    assert_eq!(
        addrs(&ask(
            &z,
            "10-85-0-6.db.default.svc.cluster.local.",
            RecordType::A
        )),
        ["10.85.0.6"]
    );
    assert_eq!(
        ask(&z, "db-3.db.default.svc.cluster.local.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // The unready pod is nowhere.
    let gone = ask(&z, "10-85-0-7.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    let srv = ask(
        &z,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut targets: Vec<String> = srv
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => format!("{} {}", s.port, s.target),
            o => panic!("{o:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "5432 10-85-0-6.db.default.svc.cluster.local.",
            "5432 10-85-0-8.db.default.svc.cluster.local.",
            "5432 db-0.db.default.svc.cluster.local.",
        ]
    );
    assert_eq!(srv.additionals.len(), 3);
    // PTR of an endpoint address.
    let ptr = ask(&z, "5.0.85.10.in-addr.arpa.", RecordType::PTR);
    let RData::PTR(p) = &ptr.answers[0].data else {
        panic!()
    };
    assert_eq!(p.0.to_ascii(), "db-0.db.default.svc.cluster.local.");
}

#[test]
fn external_name_is_a_cname_chased_upstream() {
    let z = cluster();
    let Answer::Local { msg, chase } = z.answer(&query(
        Name::from_ascii("ext.other.svc.cluster.local.").unwrap(),
        RecordType::A,
    )) else {
        panic!()
    };
    let RData::CNAME(c) = &msg.answers[0].data else {
        panic!("{msg:?}")
    };
    assert_eq!(c.0.to_ascii(), "db.example.com.");
    let (n, t) = chase.unwrap();
    assert_eq!(
        (n.to_ascii().as_str(), t),
        ("db.example.com.", RecordType::A)
    );
}

#[test]
fn missing_names_are_nxdomain_and_other_types_nodata_both_with_the_soa() {
    let z = cluster();
    let nx = ask(&z, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities[0].data, RData::SOA(_)));
    // The search-list expansion of an outside name stays here too.
    let nx = ask(&z, "example.com.default.svc.cluster.local.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    for (name, t) in [
        ("web.default.svc.cluster.local.", RecordType::AAAA),
        ("default.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        let m = ask(&z, name, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert!(matches!(m.authorities[0].data, RData::SOA(_)), "{name}");
    }
}

#[test]
fn pod_names_and_forwarding() {
    let z = cluster();
    assert_eq!(
        addrs(&ask(
            &z,
            "10-85-0-9.default.pod.cluster.local.",
            RecordType::A
        )),
        ["10.85.0.9"]
    );
    assert_eq!(
        ask(&z, "10-85-0.default.pod.cluster.local.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // ClusterIP PTR answered here; unknown addresses and outside names forwarded.
    let ptr = ask(&z, "10.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr.answers.len(), 1);
    for (name, t) in [
        ("example.com.", RecordType::A),
        ("1.1.168.192.in-addr.arpa.", RecordType::PTR),
        ("local.", RecordType::A),
    ] {
        let q = query(Name::from_ascii(name).unwrap(), t);
        assert!(matches!(z.answer(&q), Answer::Forward), "{name}");
    }
}

#[test]
fn other_cluster_domain() {
    let z = Zone::build(
        "k8s.test",
        &[service(
            r#"{"metadata": {"name": "a", "namespace": "ns1"}, "spec": {"clusterIP": "10.96.0.3"}}"#,
        )],
        &[],
    );
    assert_eq!(
        addrs(&ask(&z, "a.ns1.svc.k8s.test.", RecordType::A)),
        ["10.96.0.3"]
    );
    let q = query(
        Name::from_ascii("a.ns1.svc.cluster.local.").unwrap(),
        RecordType::A,
    );
    assert!(matches!(z.answer(&q), Answer::Forward));
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    let empty = service(
        r#"{"metadata": {"name": "quiet", "namespace": "solo"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432}]}}"#,
    );
    let slices = crate::endpoints::slices(&empty, &[pod("db-2", "10.85.0.7", false, None)]);
    let z = Zone::build("cluster.local", &[empty], &slices);
    for (name, t) in [
        ("quiet.solo.svc.cluster.local.", RecordType::A),
        ("quiet.solo.svc.cluster.local.", RecordType::AAAA),
        ("_pg._tcp.quiet.solo.svc.cluster.local.", RecordType::SRV),
    ] {
        let m = ask(&z, name, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(matches!(m.authorities[0].data, RData::SOA(_)), "{name}");
    }
    // The namespace's name exists (NODATA).
    let m = ask(&z, "solo.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn ptr_for_cluster_ips_and_endpoints_of_every_service() {
    // One pod behind a ClusterIP Service and a headless one: both endpoint names resolve and
    // its PTR lists both; the ClusterIP's PTR is the Service.
    let web = service(
        r#"{"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432}]}}"#,
    );
    let db = service(
        r#"{"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432}]}}"#,
    );
    let pods = [pod("db-1", "10.85.0.6", true, None)];
    let mut slices = crate::endpoints::slices(&web, &pods);
    slices.extend(crate::endpoints::slices(&db, &pods));
    let z = Zone::build("cluster.local", &[web, db], &slices);
    assert_eq!(
        addrs(&ask(
            &z,
            "10-85-0-6.web.default.svc.cluster.local.",
            RecordType::A
        )),
        ["10.85.0.6"]
    );
    // The ClusterIP Service's own name keeps its one address.
    assert_eq!(
        addrs(&ask(&z, "web.default.svc.cluster.local.", RecordType::A)),
        ["10.96.0.10"]
    );
    let ptrs = |name: &str| -> Vec<String> {
        ask(&z, name, RecordType::PTR)
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(p) => p.0.to_ascii(),
                o => panic!("{o:?}"),
            })
            .collect()
    };
    assert_eq!(
        ptrs("6.0.85.10.in-addr.arpa."),
        [
            "10-85-0-6.db.default.svc.cluster.local.",
            "10-85-0-6.web.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        ptrs("10.0.96.10.in-addr.arpa."),
        ["web.default.svc.cluster.local."]
    );
    // A pod serving no Service: forwarded, as CoreDNS falls through.
    let q = query(
        Name::from_ascii("9.0.85.10.in-addr.arpa.").unwrap(),
        RecordType::PTR,
    );
    assert!(matches!(z.answer(&q), Answer::Forward));
}

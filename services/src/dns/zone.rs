//! The cluster domain's records and the answer to one query, as CoreDNS's `kubernetes`
//! plugin gives them:
//!
//! - `svc.ns.svc.<domain>`: A → the ClusterIP; for a headless Service one A per ready
//!   endpoint (the EndpointSlices already count every address ready with
//!   `publishNotReadyAddresses`); ExternalName → CNAME to `spec.externalName`.
//! - `_port._proto.svc.ns.svc.<domain>`: SRV for each named port, targets the Service name
//!   (ClusterIP) or each endpoint's name (headless), whose A records go in the additional
//!   section.
//! - `host.svc.ns.svc.<domain>` for the ready endpoints of every Service (CoreDNS answers
//!   endpoint names for ClusterIP Services too): `host` is the endpoint's hostname (a Pod with
//!   `spec.hostname` and `spec.subdomain` = the Service) or its dashed address.
//! - `a-b-c-d.ns.pod.<domain>`: A → a.b.c.d (the plugin's `pods insecure` mode).
//! - PTR: a ClusterIP → the Service's name; else a ready endpoint's address → its endpoint
//!   name under each Service it serves. CoreDNS has no reverse records for `pod.<domain>`
//!   names: the PTR of a pod serving no Service falls through to the upstream resolvers
//!   (`fallthrough in-addr.arpa` in the default Corefile), as here.
//!
//! Names in the domain that hold nothing are NXDOMAIN, other types of names that exist (AAAA,
//! say) NOERROR with no answer; both carry the zone's SOA. A headless Service without ready
//! endpoints has no name: NXDOMAIN (CoreDNS's `findServices` finds no record for it); its
//! namespace's name still exists. Names outside the domain are forwarded.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::TTL;
use crate::endpoints::LABEL_SERVICE_NAME;

/// What one name holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    a: Vec<Ipv4Addr>,
    cname: Option<String>,
    /// (port, target name)
    srv: Vec<(u16, String)>,
}

/// The records of the cluster domain. Names are lowercase and end with a dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    /// `cluster.local.`
    domain: String,
    names: HashMap<String, Node>,
    /// ClusterIP → the Service's name (CoreDNS looks these up first).
    svc_ptr: HashMap<Ipv4Addr, String>,
    /// Ready endpoint address → its names under every Service it serves.
    ep_ptr: HashMap<Ipv4Addr, Vec<String>>,
}

/// How a query is answered (one per query, so the size difference does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// From the zone. When it ends in a CNAME out of the zone, `chase` is the name (and
    /// type) the server resolves upstream and appends.
    Local {
        msg: Message,
        chase: Option<(Name, RecordType)>,
    },
    /// Not the zone's: send it to the upstream resolvers as it is.
    Forward,
}

fn fqdn(s: &str) -> String {
    let s = s.trim_end_matches('.').to_ascii_lowercase();
    format!("{s}.")
}

impl Zone {
    /// An empty zone for `domain` (`cluster.local`).
    pub fn empty(domain: &str) -> Zone {
        Zone {
            domain: fqdn(domain),
            ..Default::default()
        }
    }

    /// The zone of `domain` from every Service and the current EndpointSlices.
    pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice]) -> Zone {
        let mut z = Zone::empty(domain);
        for svc in services {
            z.add_service(svc, slices);
        }
        z
    }

    fn node(&mut self, name: &str) -> &mut Node {
        // Every ancestor down to the domain exists too (empty non-terminals answer NODATA).
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.len() < self.domain.len() || !parent.ends_with(&self.domain) {
                break;
            }
            self.names.entry(parent.to_owned()).or_default();
            rest = parent;
        }
        self.names.entry(name.to_owned()).or_default()
    }

    fn add_service(&mut self, svc: &Service, slices: &[EndpointSlice]) {
        let (Some(name), Some(spec)) = (svc.metadata.name.as_deref(), svc.spec.as_ref()) else {
            return;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let base = fqdn(&format!("{name}.{ns}.svc.{}", self.domain));
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.clone().unwrap_or_default();
            let node = self.node(&base);
            if !target.is_empty() {
                node.cname = Some(fqdn(&target));
            }
            return;
        }
        let srv_name =
            |port: &str, proto: &str| format!("_{}._{}.{base}", port, proto.to_ascii_lowercase());
        let ns_name = fqdn(&format!("{ns}.svc.{}", self.domain));
        self.node(&ns_name);
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if let Some(Ok(ip)) = spec.cluster_ip.as_deref().map(str::parse::<Ipv4Addr>) {
            self.node(&base).a.push(ip);
            self.svc_ptr.insert(ip, base.clone());
            for p in spec.ports.iter().flatten() {
                let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                let port = u16::try_from(p.port).unwrap_or(0);
                self.node(&srv_name(pname, proto))
                    .srv
                    .push((port, base.clone()));
            }
        } else if !headless {
            // No address yet (or none this zone understands): the name exists, empty.
            self.node(&base);
        }
        self.add_endpoints(&base, ns, name, slices, headless);
    }

    /// The ready endpoints of Service `ns/name` (CoreDNS's endpoint records, for every kind of
    /// Service): `host.<base>` A and PTR, and for a headless Service also the Service's own A
    /// records and SRV per named port. A headless Service without ready endpoints has no
    /// name (NXDOMAIN, as CoreDNS answers).
    fn add_endpoints(
        &mut self,
        base: &str,
        ns: &str,
        name: &str,
        slices: &[EndpointSlice],
        headless: bool,
    ) {
        let mine = slices.iter().filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_SERVICE_NAME))
                    .map(String::as_str)
                    == Some(name)
        });
        let srv_name =
            |port: &str, proto: &str| format!("_{}._{}.{base}", port, proto.to_ascii_lowercase());
        for slice in mine {
            let ready = slice.endpoints.iter().filter(|e| {
                e.conditions
                    .as_ref()
                    .is_none_or(|c| c.ready.unwrap_or(true))
            });
            for e in ready {
                for ip in e
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                {
                    let host = e
                        .hostname
                        .clone()
                        .unwrap_or_else(|| ip.to_string().replace('.', "-"));
                    let target = fqdn(&format!("{host}.{base}"));
                    self.node(&target).a.push(ip);
                    let ptrs = self.ep_ptr.entry(ip).or_default();
                    if !ptrs.contains(&target) {
                        ptrs.push(target.clone());
                        ptrs.sort();
                    }
                    if !headless {
                        continue;
                    }
                    self.node(base).a.push(ip);
                    for p in slice.ports.iter().flatten() {
                        let (Some(pname), Some(port)) =
                            (p.name.as_deref().filter(|n| !n.is_empty()), p.port)
                        else {
                            continue;
                        };
                        let proto = p.protocol.as_deref().unwrap_or("TCP");
                        let port = u16::try_from(port).unwrap_or(0);
                        self.node(&srv_name(pname, proto))
                            .srv
                            .push((port, target.clone()));
                    }
                }
            }
        }
    }

    fn in_zone(&self, qname: &str) -> bool {
        qname == self.domain || qname.ends_with(&format!(".{}", self.domain))
    }

    fn soa(&self) -> Record {
        let n = |s: &str| Name::from_ascii(s).unwrap_or_default();
        let soa = SOA::new(
            n(&format!("ns.dns.{}", self.domain)),
            n(&format!("hostmaster.{}", self.domain)),
            1,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(n(&self.domain), TTL, RData::SOA(soa))
    }

    /// `a-b-c-d.ns.pod.<domain>` → a.b.c.d
    fn pod_address(&self, qname: &str) -> Option<Ipv4Addr> {
        let rest = qname.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (dashed, ns) = rest.split_once('.')?;
        if ns.contains('.') {
            return None;
        }
        dashed.replace('-', ".").parse().ok()
    }

    /// The answer to `req`.
    pub fn answer(&self, req: &Message) -> Answer {
        let mut msg = response_to(req);
        if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
            msg.metadata.response_code = if req.metadata.op_code == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return Answer::Local { msg, chase: None };
        }
        let q = &req.queries[0];
        let qname = fqdn(&q.name().to_ascii());
        let qtype = q.query_type();
        let name = q.name().clone();
        if qtype == RecordType::PTR {
            let Some(ip) = reverse_v4(&qname) else {
                return Answer::Forward;
            };
            let targets = match (self.svc_ptr.get(&ip), self.ep_ptr.get(&ip)) {
                (Some(svc), _) => std::slice::from_ref(svc),
                (None, Some(eps)) => eps.as_slice(),
                // Not a Service's (a pod serving none, say): CoreDNS falls through to the
                // upstream resolvers (`fallthrough in-addr.arpa`).
                (None, None) => return Answer::Forward,
            };
            msg.metadata.authoritative = true;
            for target in targets {
                let t = Name::from_ascii(target).unwrap_or_default();
                msg.add_answer(Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(t))));
            }
            return Answer::Local { msg, chase: None };
        }
        if !self.in_zone(&qname) {
            return Answer::Forward;
        }
        msg.metadata.authoritative = true;
        let pod = self.pod_address(&qname).map(|ip| Node {
            a: vec![ip],
            ..Default::default()
        });
        let Some(node) = pod.as_ref().or_else(|| self.names.get(&qname)) else {
            msg.metadata.response_code = ResponseCode::NXDomain;
            msg.add_authority(self.soa());
            return Answer::Local { msg, chase: None };
        };
        let mut chase = None;
        if let Some(target) = &node.cname {
            let t = Name::from_ascii(target).unwrap_or_default();
            msg.add_answer(Record::from_rdata(
                name,
                TTL,
                RData::CNAME(CNAME(t.clone())),
            ));
            if qtype != RecordType::CNAME {
                chase = Some((t, qtype));
            }
            return Answer::Local { msg, chase };
        }
        let a_records = |n: &Name, node: &Node| {
            node.a
                .iter()
                .map(|ip| Record::from_rdata(n.clone(), TTL, RData::A(A(*ip))))
                .collect::<Vec<_>>()
        };
        if matches!(qtype, RecordType::A | RecordType::ANY) {
            msg.add_answers(a_records(&name, node));
        }
        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
            let weight = u16::try_from(100 / node.srv.len().max(1)).unwrap_or(100);
            for (port, target) in &node.srv {
                let t = Name::from_ascii(target).unwrap_or_default();
                let srv = SRV::new(0, weight, *port, t.clone());
                msg.add_answer(Record::from_rdata(name.clone(), TTL, RData::SRV(srv)));
                if let Some(tn) = self.names.get(target) {
                    msg.add_additionals(a_records(&t, tn));
                }
            }
        }
        if msg.answers.is_empty() {
            msg.add_authority(self.soa());
        }
        Answer::Local { msg, chase }
    }
}

/// A response to `req` with its id, question, RD and CD bits, and EDNS when it had EDNS.
pub fn response_to(req: &Message) -> Message {
    let mut msg = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    msg.metadata = Metadata::response_from_request(&req.metadata);
    msg.metadata.recursion_available = true;
    msg.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        msg.set_edns(e);
    }
    msg
}

/// A query for `name`/`qtype` with a random id (the server's CNAME chase, and tests).
pub fn query(name: Name, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, qtype));
    m
}

/// `4.3.2.1.in-addr.arpa.` → 1.2.3.4
fn reverse_v4(qname: &str) -> Option<Ipv4Addr> {
    let rest = qname.strip_suffix(".in-addr.arpa.")?;
    let mut o: Vec<u8> = rest
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if o.len() != 4 {
        return None;
    }
    o.reverse();
    Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;

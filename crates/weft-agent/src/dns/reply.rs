//! What to do with one query (pure): answer from the table, answer with an error, or forward it;
//! and how big a reply may be on its transport (EDNS, truncation).
//!
//! Beyond Istio: a request's OPT record gets one back (version 0, the DO bit echoed), an EDNS
//! version other than 0 gets BADVERS (RFC 6891 §6.1.3), and a UDP reply never exceeds what the
//! requestor can take — its EDNS payload size, at least 512, or 512 without EDNS — with TC set
//! when answers had to go, for local and forwarded answers alike (istio#61371, ztunnel#2060).

use super::table::{Family, Found, LookupTable, Owner, TTL};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The UDP payload size this server advertises in its OPT records (the DNS flag day value).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;
/// Largest DNS message (TCP's two-byte length).
pub const MAX_MESSAGE: usize = 65535;
const MIN_UDP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The outcome for one query.
#[derive(Debug)]
pub enum Outcome {
    /// Send `response` (built here, from the table or as an error).
    Reply {
        request: Option<Box<Message>>,
        response: Box<Message>,
        /// The question's host was in the table (for the query log).
        found: bool,
    },
    /// Not a name of the mesh: forward the request bytes unchanged.
    Forward { request: Box<Message> },
    /// Not even a DNS header: say nothing.
    Drop,
}

/// Decides what to do with `bytes`. `table` is `None` until the first name table arrives.
pub fn decide(bytes: &[u8], table: Option<&LookupTable>) -> Outcome {
    let request = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => return format_error(bytes),
    };
    if request.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let error = |code| Outcome::Reply {
        response: Box::new(error_reply(&request, code)),
        request: Some(Box::new(request.clone())),
        found: false,
    };
    if request.queries.is_empty() {
        return error(ResponseCode::ServFail); // Istio
    }
    if request.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return error(ResponseCode::BADVERS);
    }
    let Some(table) = table else {
        return error(ResponseCode::ServFail); // before the first table, as Istio
    };
    let q = &request.queries[0];
    let family = match q.query_type() {
        RecordType::A => Family::V4,
        RecordType::AAAA => Family::V6,
        _ => {
            return Outcome::Forward {
                request: Box::new(request),
            };
        }
    };
    if request.metadata.op_code != OpCode::Query || q.query_class() != DNSClass::IN {
        return Outcome::Forward {
            request: Box::new(request),
        };
    }
    let found = lookup_key(q.name()).and_then(|key| table.lookup(&key, family).map(answers));
    match found {
        Some(records) => {
            let mut response = reply_to(&request);
            // The authority for the names it knows (Istio).
            response.metadata.authoritative = true;
            response.answers = records.into_records(q.name());
            Outcome::Reply {
                request: Some(Box::new(request)),
                response: Box::new(response),
                found: true,
            }
        }
        None => Outcome::Forward {
            request: Box::new(request),
        },
    }
}

/// The table's key for a question name: lower-case labels, dot-terminated. `None` for names no
/// table host can be (labels with dots or non-printable bytes).
pub fn lookup_key(name: &Name) -> Option<String> {
    let mut key = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        if label.iter().any(|&b| !b.is_ascii_graphic() || b == b'.') {
            return None;
        }
        key.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
        key.push('.');
    }
    if key.is_empty() {
        key.push('.');
    }
    Some(key)
}

/// A table answer before it becomes records: owned data, shuffled.
pub struct Answers {
    cname: Option<String>,
    owner: Option<String>,
    ips: Vec<std::net::IpAddr>,
}

fn answers(found: Found<'_>) -> Answers {
    let mut ips = found.ips.to_vec();
    // Shuffled, for DNS load balancing over several addresses (Istio, kube-dns).
    fastrand::shuffle(&mut ips);
    Answers {
        cname: found.cname.map(str::to_string),
        owner: match found.owner {
            Owner::Question => None,
            Owner::Name(n) => Some(n.to_string()),
        },
        ips,
    }
}

impl Answers {
    /// The answer section: the CNAME first, then the addresses; nothing at all when there is no
    /// address of the asked family (Istio drops the CNAME too).
    fn into_records(self, question: &Name) -> Vec<Record> {
        if self.ips.is_empty() {
            return Vec::new();
        }
        let name_of = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| question.clone());
        let mut out = Vec::with_capacity(self.ips.len() + 1);
        if let Some(target) = &self.cname {
            out.push(Record::from_rdata(
                question.clone(),
                TTL,
                RData::CNAME(CNAME(name_of(target))),
            ));
        }
        let owner = match &self.owner {
            Some(n) => name_of(n),
            None => question.clone(),
        };
        for ip in self.ips {
            let data = match ip {
                std::net::IpAddr::V4(v4) => RData::A(A(v4)),
                std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            out.push(Record::from_rdata(owner.clone(), TTL, data));
        }
        out
    }
}

/// A response header and question for `request`: id, opcode, RD and CD copied, RA set (queries
/// for other names are resolved for the client), the first question, and an OPT record when the
/// request had one.
pub fn reply_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.queries = request.queries.iter().take(1).cloned().collect();
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(ADVERTISED_UDP_SIZE);
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        response.edns = Some(edns);
    }
    response
}

/// An error reply (SERVFAIL, BADVERS, ...) to `request`.
pub fn error_reply(request: &Message, code: ResponseCode) -> Message {
    let mut response = reply_to(request);
    response.metadata.response_code = code;
    if code.high() > 0 && response.edns.is_none() {
        // Extended codes travel in OPT; a request without one cannot get them.
        response.metadata.response_code = ResponseCode::FormErr;
    }
    response
}

/// FORMERR for a message whose header parses but whose body does not; nothing otherwise.
fn format_error(bytes: &[u8]) -> Outcome {
    let Ok(header) = hickory_proto::op::Header::read(&mut BinDecoder::new(bytes)) else {
        return Outcome::Drop;
    };
    if header.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let mut response = Message::response(header.metadata.id, header.metadata.op_code);
    response.metadata.recursion_desired = header.metadata.recursion_desired;
    response.metadata.response_code = ResponseCode::FormErr;
    Outcome::Reply {
        request: None,
        response: Box::new(response),
        found: false,
    }
}

/// The largest reply the requestor takes on `transport`.
pub fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => MAX_MESSAGE,
        Transport::Udp => request
            .edns
            .as_ref()
            .map_or(MIN_UDP, |e| usize::from(e.max_payload()).max(MIN_UDP)),
    }
}

/// Encodes `response` within `limit` bytes. Too big: the additional records go first (no TC),
/// then authority and answer records until it fits, with TC set. The OPT record always stays.
pub fn encode_within(response: &mut Message, limit: usize) -> Vec<u8> {
    if let Some(bytes) = encode(response).filter(|b| b.len() <= limit) {
        return bytes;
    }
    response.additionals.clear();
    if let Some(bytes) = encode(response).filter(|b| b.len() <= limit) {
        return bytes;
    }
    response.metadata.truncation = true;
    response.authorities.clear();
    // The most answers that fit (binary search: encoding is the expensive part).
    let answers = std::mem::take(&mut response.answers);
    let (mut fits, mut too_many) = (0, answers.len() + 1);
    while too_many - fits > 1 {
        let mid = (fits + too_many) / 2;
        response.answers = answers[..mid].to_vec();
        match encode(response) {
            Some(b) if b.len() <= limit => fits = mid,
            _ => too_many = mid,
        }
    }
    response.answers = answers[..fits].to_vec();
    match encode(response) {
        Some(b) if b.len() <= limit => b,
        _ => {
            // Not even the question fits (or it cannot be encoded): header only.
            response.answers.clear();
            response.queries.clear();
            encode(response).unwrap_or_default()
        }
    }
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    m.to_vec().ok()
}

/// A forwarded reply as the client gets it: unchanged when it fits, truncated when not, SERVFAIL
/// when it is not a reply to `request`.
pub fn relay(
    request: &Message,
    upstream: Option<&[u8]>,
    transport: Transport,
) -> (Message, Vec<u8>) {
    let limit = size_limit(request, transport);
    let parsed = upstream.and_then(|b| Message::from_vec(b).ok().map(|m| (m, b)));
    match parsed {
        Some((m, bytes))
            if m.metadata.id == request.metadata.id
                && m.metadata.message_type == MessageType::Response
                && m.queries.first().map(|q| (q.name(), q.query_type()))
                    == request.queries.first().map(|q| (q.name(), q.query_type())) =>
        {
            if bytes.len() <= limit {
                (m, bytes.to_vec())
            } else {
                let mut m = m;
                let out = encode_within(&mut m, limit);
                (m, out)
            }
        }
        _ => {
            let mut m = error_reply(request, ResponseCode::ServFail);
            let out = encode_within(&mut m, limit);
            (m, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::table::ProxyScope;
    use hickory_proto::op::Query;
    use weft_proto::nds::NameTable;
    use weft_proto::nds::name_table::NameInfo;

    fn table() -> LookupTable {
        let many: Vec<String> = (1..=60).map(|i| format!("10.1.0.{i}")).collect();
        let nt = NameTable {
            table: [
                (
                    "webapp.istioinaction.svc.cluster.local".to_string(),
                    NameInfo {
                        ips: vec![
                            "10.96.0.10".into(),
                            "10.96.0.11".into(),
                            "10.96.0.12".into(),
                        ],
                        registry: "Kubernetes".into(),
                        shortname: "webapp".into(),
                        namespace: "istioinaction".into(),
                        ..Default::default()
                    },
                ),
                (
                    "big.example".to_string(),
                    NameInfo {
                        ips: many,
                        registry: "External".into(),
                        ..Default::default()
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        LookupTable::build(
            &nt,
            &ProxyScope {
                namespace: "forum-services".into(),
                domain: "svc.cluster.local".into(),
                first_search: Some("forum-services.svc.cluster.local".into()),
            },
        )
    }

    fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(true);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    fn reply(o: Outcome) -> (Message, bool) {
        match o {
            Outcome::Reply {
                response, found, ..
            } => (*response, found),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn known_names_are_answered_authoritatively_and_shuffled() {
        let t = table();
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let (r, found) = reply(decide(
                &query("WebApp.IstioInAction.", RecordType::A, None),
                Some(&t),
            ));
            assert!(found);
            assert_eq!(r.metadata.id, 4242);
            assert_eq!(r.metadata.message_type, MessageType::Response);
            assert!(r.metadata.authoritative && r.metadata.recursion_desired);
            assert!(r.metadata.recursion_available);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(r.queries[0].name().to_ascii(), "WebApp.IstioInAction.");
            assert_eq!(r.answers.len(), 3);
            assert!(r.answers.iter().all(|a| a.ttl == 30
                && a.name.to_ascii() == "WebApp.IstioInAction."
                && a.record_type() == RecordType::A));
            assert!(r.edns.is_none(), "no OPT without one in the request");
            orders.insert(format!(
                "{:?}",
                r.answers
                    .iter()
                    .map(|a| a.data.to_string())
                    .collect::<Vec<_>>()
            ));
        }
        assert!(orders.len() > 1, "answers are shuffled");
    }

    #[test]
    fn empty_noerror_for_the_other_family() {
        let (r, found) = reply(decide(
            &query("webapp.istioinaction.", RecordType::AAAA, None),
            Some(&table()),
        ));
        assert!(found && r.metadata.authoritative);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn search_expansion_is_a_chained_cname() {
        let (r, _) = reply(decide(
            &query(
                "webapp.istioinaction.forum-services.svc.cluster.local.",
                RecordType::A,
                None,
            ),
            Some(&table()),
        ));
        assert_eq!(r.answers.len(), 4);
        let c = &r.answers[0];
        assert_eq!(c.record_type(), RecordType::CNAME);
        assert_eq!(
            c.name.to_ascii(),
            "webapp.istioinaction.forum-services.svc.cluster.local."
        );
        assert_eq!(c.data.to_string(), "webapp.istioinaction.");
        assert!(
            r.answers[1..]
                .iter()
                .all(|a| a.name.to_ascii() == "webapp.istioinaction." && a.ttl == 30)
        );
    }

    #[test]
    fn other_names_and_types_are_forwarded() {
        let t = table();
        for (name, ty) in [
            ("example.org.", RecordType::A),
            ("webapp.istioinaction.svc.cluster.", RecordType::A),
            ("webapp.istioinaction.", RecordType::MX),
            ("webapp.istioinaction.", RecordType::TXT),
        ] {
            assert!(
                matches!(
                    decide(&query(name, ty, None), Some(&t)),
                    Outcome::Forward { .. }
                ),
                "{name} {ty}"
            );
        }
    }

    #[test]
    fn servfail_before_the_first_table_and_without_a_question() {
        let (r, found) = reply(decide(
            &query("webapp.istioinaction.", RecordType::A, None),
            None,
        ));
        assert!(!found);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.queries.len(), 1);
        let mut m = Message::query();
        m.metadata.id = 7;
        let (r, _) = reply(decide(&m.to_vec().unwrap(), Some(&table())));
        assert_eq!(
            (r.metadata.id, r.metadata.response_code),
            (7, ResponseCode::ServFail)
        );
    }

    #[test]
    fn garbage_gets_formerr_or_nothing() {
        let mut bytes = query("webapp.istioinaction.", RecordType::A, None);
        bytes.truncate(bytes.len() - 3);
        let (r, _) = reply(decide(&bytes, Some(&table())));
        assert_eq!(
            (r.metadata.id, r.metadata.response_code),
            (4242, ResponseCode::FormErr)
        );
        assert!(matches!(decide(&[1, 2, 3], Some(&table())), Outcome::Drop));
        // A response is never answered (no loops between servers).
        let mut resp = Message::response(1, OpCode::Query);
        resp.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        assert!(matches!(
            decide(&resp.to_vec().unwrap(), None),
            Outcome::Drop
        ));
    }

    #[test]
    fn edns_is_echoed_and_other_versions_get_badvers() {
        let (r, _) = reply(decide(
            &query("webapp.istioinaction.", RecordType::A, Some(4096)),
            Some(&table()),
        ));
        let e = r.edns.as_ref().expect("OPT echoed");
        assert_eq!((e.version(), e.max_payload()), (0, ADVERTISED_UDP_SIZE));
        assert!(e.flags().dnssec_ok, "DO echoed");
        // Round trip: the encoded reply carries the OPT record.
        let mut r2 = r.clone();
        let wire = encode_within(&mut r2, 512);
        assert!(Message::from_vec(&wire).unwrap().edns.is_some());

        let mut m = Message::from_vec(&query("a.", RecordType::A, Some(1232))).unwrap();
        m.edns.as_mut().unwrap().set_version(1);
        let (r, _) = reply(decide(&m.to_vec().unwrap(), Some(&table())));
        assert_eq!(r.metadata.response_code, ResponseCode::BADVERS);
        let wire = r.to_vec().unwrap();
        let back = Message::from_vec(&wire).unwrap();
        // 16 on the wire (hickory reads 16 back as BADSIG, its TSIG twin).
        assert_eq!(u16::from(back.metadata.response_code), 16);
        assert_eq!(back.edns.unwrap().version(), 0);
    }

    #[test]
    fn size_limits_follow_the_requestor() {
        let m = |edns| Message::from_vec(&query("a.", RecordType::A, edns)).unwrap();
        assert_eq!(size_limit(&m(None), Transport::Udp), 512);
        assert_eq!(size_limit(&m(Some(4096)), Transport::Udp), 4096);
        assert_eq!(size_limit(&m(Some(1232)), Transport::Udp), 1232);
        // Below 512 counts as 512.
        let mut small = m(Some(1232));
        small.edns.as_mut().unwrap().set_max_payload(100);
        assert_eq!(size_limit(&small, Transport::Udp), 512);
        assert_eq!(size_limit(&m(None), Transport::Tcp), 65535);
    }

    #[test]
    fn udp_truncation_sets_tc_and_keeps_what_fits() {
        let t = table();
        // 60 A records: ~1 KB with compression, more than 512.
        for (edns, limit) in [(None, 512usize), (Some(600u16), 600)] {
            let bytes = query("big.example.", RecordType::A, edns);
            let req = Message::from_vec(&bytes).unwrap();
            let (mut r, _) = reply(decide(&bytes, Some(&t)));
            let wire = encode_within(&mut r, size_limit(&req, Transport::Udp));
            assert!(wire.len() <= limit, "{} > {limit}", wire.len());
            let back = Message::from_vec(&wire).unwrap();
            assert!(back.metadata.truncation, "TC set");
            assert!(!back.answers.is_empty() && back.answers.len() < 60);
            // One more answer would not have fitted.
            let mut more = back.clone();
            more.answers.push(back.answers[0].clone());
            assert!(more.to_vec().unwrap().len() > limit);
            assert_eq!(
                back.edns.is_some(),
                edns.is_some(),
                "OPT kept when truncating"
            );
        }
        // Within the requestor's size: everything, no TC.
        let bytes = query("big.example.", RecordType::A, Some(4096));
        let (mut r, _) = reply(decide(&bytes, Some(&t)));
        let back = Message::from_vec(&encode_within(&mut r, 4096)).unwrap();
        assert_eq!(back.answers.len(), 60);
        assert!(!back.metadata.truncation);
    }

    #[test]
    fn relayed_replies_are_checked_and_truncated() {
        let bytes = query("example.org.", RecordType::A, None);
        let req = Message::from_vec(&bytes).unwrap();
        let mut up = reply_to(&req);
        for i in 0..60u8 {
            up.answers.push(Record::from_rdata(
                Name::from_ascii("example.org.").unwrap(),
                300,
                RData::A(A([192, 0, 2, i].into())),
            ));
        }
        let up_wire = up.to_vec().unwrap();
        assert!(up_wire.len() > 512);
        let (m, out) = relay(&req, Some(&up_wire), Transport::Udp);
        assert!(out.len() <= 512 && m.metadata.truncation);
        assert!(Message::from_vec(&out).unwrap().metadata.truncation);
        // Over TCP the same reply passes unchanged.
        assert_eq!(relay(&req, Some(&up_wire), Transport::Tcp).1, up_wire);
        // No reply, or a reply to something else: SERVFAIL.
        let (m, _) = relay(&req, None, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        let mut other = up.clone();
        other.metadata.id = 1;
        let (m, _) = relay(&req, Some(&other.to_vec().unwrap()), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn lookup_keys() {
        let k = |s: &str| lookup_key(&Name::from_ascii(s).unwrap());
        assert_eq!(k("WebApp.NS.").as_deref(), Some("webapp.ns."));
        assert_eq!(k(".").as_deref(), Some("."));
        assert_eq!(k("a\\.b.c.").as_deref(), None);
    }
}

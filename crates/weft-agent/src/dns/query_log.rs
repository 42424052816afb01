//! The per-query log of `--log_output_level=dns:debug`, in Istio agent's own line format so the
//! same greps and tools work: `<time>\tdebug\tdns\t<message>\tprotocol=udp edns=false id=<uuid>`,
//! with messages printed the way Istio's agent prints them (dig's layout).
//!
//! The lines go straight to stderr: they are the one part of the agent's log that must look like
//! Istio's, and they cost nothing when the scope is off.

use super::reply::Transport;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::{RData, Record, RecordType};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

/// Whether query logging is on; cheap to copy into every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryLog {
    pub enabled: bool,
}

/// The labels of one query's lines.
pub struct Labels {
    protocol: &'static str,
    edns: bool,
    id: String,
}

impl QueryLog {
    /// Starts a query's log: its labels and the `request` line. `None` when logging is off.
    pub fn request(&self, transport: Transport, request: &Message) -> Option<Labels> {
        if !self.enabled {
            return None;
        }
        let labels = Labels {
            protocol: transport.as_str(),
            edns: request.edns.is_some(),
            id: uuid_v4(),
        };
        emit(&labels, &format!("request {}", format_message(request)));
        Some(labels)
    }
}

impl Labels {
    pub fn found(&self, hostname: &str, response: &Message) {
        emit(
            self,
            &format!(
                "response for hostname {hostname:?} (found=true): {}",
                format_message(response)
            ),
        );
    }

    pub fn before_table(&self, hostname: &str) {
        emit(
            self,
            &format!("dns request for host {hostname:?} before lookup table is loaded"),
        );
    }

    pub fn forwarding(&self, hostname: &str) {
        emit(
            self,
            &format!(
                "response for hostname {hostname:?} not found in dns proxy, querying upstream"
            ),
        );
    }

    pub fn upstream(&self, hostname: &str, response: &Message) {
        emit(
            self,
            &format!(
                "upstream response for hostname {hostname:?} : {}",
                format_message(response)
            ),
        );
    }
}

fn emit(labels: &Labels, message: &str) {
    let line = format_line(SystemTime::now(), message, labels);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// One log line, Istio's console encoding: UTC time with microseconds, level, scope, message,
/// labels.
fn format_line(at: SystemTime, message: &str, l: &Labels) -> String {
    format!(
        "{}\tdebug\tdns\t{message}\tprotocol={} edns={} id={}\n",
        utc_micros(at),
        l.protocol,
        l.edns,
        l.id
    )
}

/// `2024-05-01T10:00:00.123456Z`.
fn utc_micros(at: SystemTime) -> String {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A message as dig (and Istio's agent) prints it: header, flags and counts, OPT pseudo-section,
/// then each non-empty section.
pub fn format_message(m: &Message) -> String {
    let md = &m.metadata;
    let mut s = String::new();
    let opcode = match md.op_code {
        OpCode::Query => "QUERY".to_string(),
        OpCode::Status => "STATUS".to_string(),
        OpCode::Notify => "NOTIFY".to_string(),
        OpCode::Update => "UPDATE".to_string(),
        other => format!("{}", u8::from(other)),
    };
    let _ = write!(
        s,
        ";; opcode: {opcode}, status: {}, id: {}\n;; flags:",
        rcode_name(md.response_code.into()),
        md.id
    );
    for (on, flag) in [
        (md.message_type == MessageType::Response, "qr"),
        (md.authoritative, "aa"),
        (md.truncation, "tc"),
        (md.recursion_desired, "rd"),
        (md.recursion_available, "ra"),
        (md.authentic_data, "ad"),
        (md.checking_disabled, "cd"),
    ] {
        if on {
            s.push(' ');
            s.push_str(flag);
        }
    }
    let _ = writeln!(
        s,
        "; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
        m.queries.len(),
        m.answers.len(),
        m.authorities.len(),
        m.additionals.len() + usize::from(m.edns.is_some())
    );
    if let Some(e) = &m.edns {
        let flags = if e.flags().dnssec_ok { "do" } else { "" };
        let _ = writeln!(
            s,
            "\n;; OPT PSEUDOSECTION:\n; EDNS: version {}; flags:{flags}; udp: {}",
            e.version(),
            e.max_payload()
        );
    }
    if !m.queries.is_empty() {
        s.push_str("\n;; QUESTION SECTION:\n");
        for q in &m.queries {
            let _ = writeln!(s, ";{}\t{}\t {}", q.name(), q.query_class(), q.query_type());
        }
    }
    for (title, records) in [
        ("ANSWER", &m.answers),
        ("AUTHORITY", &m.authorities),
        ("ADDITIONAL", &m.additionals),
    ] {
        if !records.is_empty() {
            let _ = writeln!(s, "\n;; {title} SECTION:");
            for r in records {
                let _ = writeln!(s, "{}", format_record(r));
            }
        }
    }
    s
}

fn format_record(r: &Record) -> String {
    let data = match &r.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string(),
    };
    let ty = match r.record_type() {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    };
    format!("{}\t{}\t{}\t{ty}\t{data}", r.name, r.ttl, r.dns_class)
}

fn rcode_name(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        n => return n.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, CNAME};
    use std::time::Duration;

    #[test]
    fn messages_print_as_dig_does() {
        let mut m = Message::response(4242, OpCode::Query);
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.add_query(Query::query(
            Name::from_ascii("webapp.ns.forum.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        m.answers.push(Record::from_rdata(
            Name::from_ascii("webapp.ns.forum.svc.cluster.local.").unwrap(),
            30,
            RData::CNAME(CNAME(Name::from_ascii("webapp.ns.").unwrap())),
        ));
        m.answers.push(Record::from_rdata(
            Name::from_ascii("webapp.ns.").unwrap(),
            30,
            RData::A(A([10, 96, 0, 10].into())),
        ));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
        assert_eq!(
            format_message(&m),
            ";; opcode: QUERY, status: NOERROR, id: 4242\n\
             ;; flags: qr aa rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n\
             \n\
             ;; OPT PSEUDOSECTION:\n\
             ; EDNS: version 0; flags:; udp: 1232\n\
             \n\
             ;; QUESTION SECTION:\n\
             ;webapp.ns.forum.svc.cluster.local.\tIN\t A\n\
             \n\
             ;; ANSWER SECTION:\n\
             webapp.ns.forum.svc.cluster.local.\t30\tIN\tCNAME\twebapp.ns.\n\
             webapp.ns.\t30\tIN\tA\t10.96.0.10\n"
        );
    }

    #[test]
    fn lines_are_istio_console_lines() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_714_557_600_123_456);
        let labels = Labels {
            protocol: "udp",
            edns: true,
            id: "id-1".into(),
        };
        assert_eq!(
            format_line(at, "request x", &labels),
            "2024-05-01T10:00:00.123456Z\tdebug\tdns\trequest x\tprotocol=udp edns=true id=id-1\n"
        );
        assert_eq!(
            utc_micros(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        // A leap day.
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_micros(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn uuids_are_v4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
        assert_ne!(u, uuid_v4());
        assert!(
            QueryLog { enabled: false }
                .request(Transport::Udp, &Message::query())
                .is_none()
        );
    }
}

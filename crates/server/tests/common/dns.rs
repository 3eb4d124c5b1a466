//! A small authoritative DNS server for tests, on UDP and TCP at one loopback port, built with
//! the same wire crate as nutmeg's resolver (`hickory-proto`): it answers the records added to
//! it, NODATA for a name that exists without records of the asked type, NXDOMAIN for a name it
//! does not know, and nothing at all for a name it was told to ignore (so the resolver times
//! out). Over UDP an answer larger than the query's EDNS payload size (512 without EDNS) is sent
//! truncated (TC, no records), as a real server does, so that the client must ask again over
//! TCP; it counts the queries over each transport.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::cert::{Algorithm, CertType, CERT};
use hickory_proto::rr::rdata::{A, AAAA, MX, SRV};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Zone {
    records: Vec<Record>,
    ignored: Vec<Name>,
}

/// The running server; it stops with the test's runtime.
#[derive(Clone)]
pub struct DnsServer {
    /// Where it answers, over UDP and over TCP.
    pub address: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
}

/// A fully qualified name from text (`bob.other.test`).
pub fn name(text: &str) -> Name {
    let mut n = Name::from_str(text).expect("a DNS name");
    n.set_fqdn(true);
    n
}

impl DnsServer {
    /// Binds a free loopback port for both transports and serves until the runtime ends.
    pub async fn start() -> DnsServer {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let server = DnsServer {
            address: udp.local_addr().unwrap(),
            zone: Arc::default(),
            udp_queries: Arc::default(),
            tcp_queries: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                s.udp_queries.fetch_add(1, Ordering::SeqCst);
                let Some(answer) = s.answer(&buf[..n], true) else {
                    continue;
                };
                let _ = udp.send_to(&answer, from).await;
            }
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        s.tcp_queries.fetch_add(1, Ordering::SeqCst);
                        let Some(answer) = s.answer(&query, false) else {
                            continue;
                        };
                        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    pub fn add(&self, name: &Name, data: RData) {
        self.zone
            .lock()
            .unwrap()
            .records
            .push(Record::from_rdata(name.clone(), 300, data));
    }

    /// A CERT record of type PKIX holding `der`.
    pub fn cert(&self, name: &Name, der: &[u8]) {
        self.cert_of_type(name, CertType::PKIX, der);
    }

    pub fn cert_of_type(&self, name: &Name, cert_type: CertType, data: &[u8]) {
        self.add(
            name,
            RData::CERT(CERT::new(cert_type, 0, Algorithm::from(0u8), data.to_vec())),
        );
    }

    pub fn mx(&self, domain: &str, preference: u16, host: &str) {
        self.add(&name(domain), RData::MX(MX::new(preference, name(host))));
    }

    pub fn srv(&self, at: &str, priority: u16, weight: u16, port: u16, target: &str) {
        self.add(
            &name(at),
            RData::SRV(SRV::new(priority, weight, port, name(target))),
        );
    }

    pub fn address(&self, host: &str, ip: IpAddr) {
        self.add(
            &name(host),
            match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            },
        );
    }

    /// Never answers for `name` (or names under it): the resolver times out.
    pub fn ignore(&self, at: &str) {
        self.zone.lock().unwrap().ignored.push(name(at));
    }

    /// Drops every record at `at`.
    pub fn remove(&self, at: &Name) {
        self.zone.lock().unwrap().records.retain(|r| r.name() != at);
    }

    pub fn udp_queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }

    /// The answer to one query, `None` to stay silent.
    fn answer(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let query = Message::from_vec(query).ok()?;
        let question = query.queries().first()?.clone();
        let zone = self.zone.lock().unwrap();
        if zone.ignored.iter().any(|i| i.zone_of(question.name())) {
            return None;
        }
        let mut answer = Message::new();
        answer
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_authoritative(true)
            .set_recursion_desired(query.recursion_desired())
            .add_query(question.clone());
        let records: Vec<Record> = zone
            .records
            .iter()
            .filter(|r| r.name() == question.name() && r.record_type() == question.query_type())
            .cloned()
            .collect();
        // A name exists if it has records, or names below it do (an empty non-terminal).
        let exists = zone
            .records
            .iter()
            .any(|r| question.name().zone_of(r.name()));
        answer.set_response_code(if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        });
        answer.add_answers(records);
        let bytes = answer.to_vec().ok()?;
        let limit = query.max_payload().max(512) as usize;
        if udp && bytes.len() > limit {
            return answer.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}

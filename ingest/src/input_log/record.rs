//! One logged message on disk, and reading a segment back.
//!
//! A record is `len u32 | crc32 u32 | body`, little-endian, where the body is
//! `seq u64 | received_ms u64 | topic_len u16 | topic | payload` and the checksum covers the
//! body. A crash can cut the last record of the newest segment short: reading stops at the
//! first record that is short or fails its checksum, and says where the good part ends.

use std::io::Read;

/// Bytes before the body.
const HEAD: usize = 8;
/// The fixed part of a body.
const FIXED: usize = 8 + 8 + 2;
/// The largest body a record may claim: the largest MQTT packet and its topic. A longer
/// claim is damage, not a record.
const MAX_BODY: usize = crate::mqtt::MQTT_MAX_PACKET + FIXED + u16::MAX as usize;

/// A logged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the log, from 0, never reused.
    pub seq: u64,
    /// When it was received (wall clock, ms).
    pub received_ms: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Appends `record`'s bytes to `out`.
pub(crate) fn encode(seq: u64, received_ms: u64, topic: &str, payload: &[u8], out: &mut Vec<u8>) {
    // MQTT topics are at most 65 535 bytes; the decoder refused longer ones already.
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    let len = FIXED + topic.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&received_ms.to_le_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + HEAD..]);
    out[start + 4..start + HEAD].copy_from_slice(&crc.to_le_bytes());
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Bytes of whole, checked records from the start.
    pub good_len: u64,
    /// Whether something after `good_len` was not a whole record.
    pub damaged: bool,
    /// The sequence number of the last whole record, kept or not.
    pub last_seq: Option<u64>,
}

/// Reads every whole record of `r`; `keep` says which to keep, by sequence number (the others
/// are only checked).
/// Any bytes may follow the last whole record (a crash can leave them): reading stops there.
/// A damaged length cannot ask for a huge buffer: a body grows only as its bytes arrive.
pub fn read_all(r: impl Read, keep: impl Fn(u64) -> bool) -> std::io::Result<Scanned> {
    read_matching(r, |record| keep(record.seq))
}

/// As [`read_all`], keeping the records `keep` admits.
pub fn read_matching(mut r: impl Read, keep: impl Fn(&Record) -> bool) -> std::io::Result<Scanned> {
    let mut out = Scanned::default();
    let mut head = [0u8; HEAD];
    let mut body = Vec::new();
    loop {
        match read_exact_or_end(&mut r, &mut head)? {
            Fill::End => return Ok(out),
            Fill::Short => {
                out.damaged = true;
                return Ok(out);
            }
            Fill::Full => {}
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if !(FIXED..=MAX_BODY).contains(&len) {
            out.damaged = true;
            return Ok(out);
        }
        body.clear();
        (&mut r).take(len as u64).read_to_end(&mut body)?;
        if body.len() < len || crc32fast::hash(&body) != crc {
            out.damaged = true;
            return Ok(out);
        }
        let Some(record) = decode_body(&body) else {
            out.damaged = true;
            return Ok(out);
        };
        out.good_len += (HEAD + len) as u64;
        out.last_seq = Some(record.seq);
        if keep(&record) {
            out.records.push(record);
        }
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let received_ms = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let topic_len = u16::from_le_bytes(body[16..18].try_into().ok()?) as usize;
    let topic = body.get(FIXED..FIXED + topic_len)?;
    Some(Record {
        seq,
        received_ms,
        topic: String::from_utf8(topic.to_vec()).ok()?,
        payload: body[FIXED + topic_len..].to_vec(),
    })
}

enum Fill {
    Full,
    Short,
    End,
}

/// Fills `buf`, telling a clean end (nothing read) from a short read.
fn read_exact_or_end(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<Fill> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(if n == 0 { Fill::End } else { Fill::Short }),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Fill::Full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<u8> {
        let mut b = Vec::new();
        encode(
            7,
            1000,
            "cw/v1/elevator/E1/event",
            b"{\"code\":\"trapped\"}",
            &mut b,
        );
        encode(8, 1001, "t", b"", &mut b);
        b
    }

    #[test]
    fn records_read_back_as_written() {
        let b = two();
        let r = read_all(&b[..], |_| true).unwrap();
        assert!(!r.damaged);
        assert_eq!(r.good_len, b.len() as u64);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].topic, "cw/v1/elevator/E1/event");
        assert_eq!(r.records[0].payload, b"{\"code\":\"trapped\"}");
        assert_eq!((r.records[1].seq, r.records[1].received_ms), (8, 1001));
        let only_8 = read_all(&b[..], |s| s == 8).unwrap();
        assert_eq!(only_8.records.len(), 1);
    }

    #[test]
    fn a_torn_or_flipped_tail_ends_the_good_part() {
        let b = two();
        let first = read_all(&b[..], |_| true).unwrap().records[0].clone();
        let first_len = (HEAD + FIXED + first.topic.len() + first.payload.len()) as u64;
        for cut in [b.len() - 1, first_len as usize + 3] {
            let r = read_all(&b[..cut], |_| true).unwrap();
            assert!(r.damaged, "cut at {cut}");
            assert_eq!((r.records.len(), r.good_len), (1, first_len));
        }
        let mut flipped = b.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let r = read_all(&flipped[..], |_| true).unwrap();
        assert!(r.damaged);
        assert_eq!(r.records.len(), 1);
        // A length no record can have is damage, not a 4 GiB allocation.
        let mut huge = b[..first_len as usize].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        let r = read_all(&huge[..], |_| true).unwrap();
        assert!(r.damaged);
        assert_eq!(r.good_len, first_len);
        // A length a record could have, over a short tail: cut there, read as it came.
        let mut claims = b[..first_len as usize].to_vec();
        claims.extend_from_slice(&(200u32 << 20).to_le_bytes());
        claims.extend_from_slice(&[0; 20]);
        let r = read_all(&claims[..], |_| true).unwrap();
        assert!(r.damaged);
        assert_eq!((r.records.len(), r.good_len), (1, first_len));
    }
}

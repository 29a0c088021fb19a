//! Ids of devices, markets, kitchens and complaints.

/// An id as it appears in a topic segment or a payload field. Most ids are short
/// (`E000123`), so they are stored inline without a heap allocation.
pub type Id = compact_str::CompactString;

/// Longest id segment the contract allows.
pub const MAX_ID_LEN: usize = 64;

/// Whether `s` is a valid id segment: 1–64 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_charset_and_length() {
        assert!(is_valid_id("E-12_a.b"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("E 1"));
        assert!(!is_valid_id("电梯1"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("+"));
    }
}

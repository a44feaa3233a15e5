//! One stable hash for everything that must come out the same on every machine and run:
//! shards, splits, folds, the paper protocol's sampling (unlike `DefaultHasher`, whose values
//! may change between Rust versions).

/// FNV-1a 64: stable across machines, runs and Rust versions (unlike `DefaultHasher`).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_of_a_known_string() {
        assert_eq!(super::stable_hash("abc"), 0xe71fa2190541574b);
    }
}

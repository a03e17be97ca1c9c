//! YCSB key names: `"user"` + zero padding + the decimal of `fnvhash64(keynum)`
//! (hashed insert order) or of `keynum` itself (ordered).

const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// Java YCSB's `Utils.fnvhash64`: FNV-1a over the 8 bytes of the long, lowest
/// byte first, then `Math.abs` of the signed result (which leaves
/// `Long.MIN_VALUE` negative, as Java does).
pub fn fnvhash64(val: i64) -> i64 {
    let mut v = val as u64;
    let mut h = FNV_OFFSET_BASIS_64;
    for _ in 0..8 {
        h ^= v & 0xff;
        h = h.wrapping_mul(FNV_PRIME_64);
        v >>= 8;
    }
    (h as i64).wrapping_abs()
}

/// How key numbers become key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyNamer {
    pub hashed: bool,
    pub zero_padding: usize,
}

impl KeyNamer {
    pub fn name(&self, keynum: u64) -> String {
        let mut s = String::with_capacity(24);
        self.write(keynum, &mut s);
        s
    }

    /// Appends the key name to `out` (no allocation when `out` has room).
    pub fn write(&self, keynum: u64, out: &mut String) {
        use std::fmt::Write;
        let n = if self.hashed {
            fnvhash64(keynum as i64)
        } else {
            keynum as i64
        };
        let digits = if n == 0 {
            1
        } else {
            n.unsigned_abs().ilog10() as usize + 1 + usize::from(n < 0)
        };
        out.push_str("user");
        for _ in digits..self.zero_padding {
            out.push('0');
        }
        let _ = write!(out, "{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_ycsb_key_vectors() {
        let k = KeyNamer {
            hashed: true,
            zero_padding: 1,
        };
        assert_eq!(k.name(0), "user6284781860667377211");
        assert_eq!(k.name(1), "user8517097267634966620");
        assert_eq!(k.name(999), "user2071219101098386137");
    }

    #[test]
    fn ordered_keys_and_zero_padding() {
        let k = KeyNamer {
            hashed: false,
            zero_padding: 5,
        };
        assert_eq!(k.name(42), "user00042");
        assert_eq!(k.name(123456), "user123456");
    }

    #[test]
    fn abs_of_min_stays_negative_like_java() {
        assert_eq!(i64::MIN.wrapping_abs(), i64::MIN);
        assert!(fnvhash64(12345) >= 0);
    }
}

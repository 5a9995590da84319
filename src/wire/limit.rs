//! Output buffer limits as Redis writes them ("hard soft seconds"): the
//! values, their parsing and what they say of a backlog. Enforced by the
//! server's connections and by the queues backends push messages into.

use std::time::Duration;

use serde::Deserialize;

use crate::wire::size::ByteSize;

/// One class's limit: a client whose unwritten output reaches `hard`
/// bytes, or stays at `soft` bytes or more for `soft_seconds`, is closed.
/// Zero turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

impl OutputLimit {
    /// "hard soft seconds", as in Redis's client-output-buffer-limit
    /// (sizes may carry kb, mb or gb).
    pub fn parse(s: &str) -> Option<OutputLimit> {
        let mut words = s.split_whitespace();
        let hard = ByteSize::parse(words.next()?)?.0;
        let soft = ByteSize::parse(words.next()?)?.0;
        let soft_seconds = words.next()?.parse().ok()?;
        words.next().is_none().then_some(OutputLimit {
            hard,
            soft,
            soft_seconds,
        })
    }

    pub fn is_off(&self) -> bool {
        self.hard == 0 && self.soft == 0
    }

    /// Why `pending` unwritten bytes, over `soft` since `over_soft_for`,
    /// end the client; None while within bounds.
    pub fn exceeded(&self, pending: usize, over_soft_for: Option<Duration>) -> Option<String> {
        let pending = pending as u64;
        if self.hard > 0 && pending >= self.hard {
            return Some(format!(
                "{pending} bytes of output over the hard limit of {} bytes",
                self.hard
            ));
        }
        match over_soft_for {
            Some(d)
                if self.soft > 0 && pending >= self.soft && d.as_secs() >= self.soft_seconds =>
            {
                Some(format!(
                    "{pending} bytes of output over the soft limit of {} bytes for {} s",
                    self.soft,
                    d.as_secs()
                ))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for OutputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.hard, self.soft, self.soft_seconds)
    }
}

impl<'de> Deserialize<'de> for OutputLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutputLimit::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid limit '{s}' (expected \"hard soft seconds\", such as \"32mb 8mb 60\")"
            ))
        })
    }
}

/// `client_output_buffer_limit`: one limit per class of client, with
/// Redis's defaults (none for normal clients; 32 MB, or 8 MB for a minute,
/// for subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputLimits {
    pub normal: OutputLimit,
    pub pubsub: OutputLimit,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            normal: OutputLimit::default(),
            pubsub: OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60,
            },
        }
    }
}

impl OutputLimits {
    /// As CONFIG GET client-output-buffer-limit shows it (Redis's replica
    /// class with its defaults, since clients parse all three).
    pub fn redis_text(&self) -> String {
        format!(
            "normal {} slave 268435456 67108864 60 pubsub {}",
            self.normal, self.pubsub
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_redis_writes_them() {
        assert_eq!(
            OutputLimit::parse("32mb 8mb 60"),
            Some(OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60
            })
        );
        assert_eq!(OutputLimit::parse("0 0 0"), Some(OutputLimit::default()));
        for bad in ["", "1 2", "1 2 3 4", "x 1 1", "1 1 -1"] {
            assert_eq!(OutputLimit::parse(bad), None, "{bad}");
        }
        assert_eq!(
            OutputLimits::default().redis_text(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
    }

    #[test]
    fn hard_and_soft_bounds() {
        let l = OutputLimit {
            hard: 100,
            soft: 10,
            soft_seconds: 2,
        };
        assert!(l.exceeded(99, None).is_none());
        assert!(l.exceeded(100, None).is_some());
        assert!(l.exceeded(50, Some(Duration::from_secs(1))).is_none());
        assert!(l.exceeded(50, Some(Duration::from_secs(2))).is_some());
        assert!(l.exceeded(9, Some(Duration::from_secs(9))).is_none());
        assert!(OutputLimit::default().exceeded(usize::MAX, None).is_none());
    }
}

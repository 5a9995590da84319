//! A user's command rules, in Redis's ACL syntax (`+@all -@dangerous
//! +client|id -debug`), applied in order to one bit per command and
//! subcommand of Redis's table (see `categories`). A request is judged by
//! its subcommand's bit where the command has subcommands, as in Redis.

use super::categories::{CATEGORIES, COMMANDS};

/// Which commands and subcommands a user may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// One bit per entry of `COMMANDS`.
    allowed: Vec<u64>,
    /// Commands keyway knows that Redis's table does not (none today):
    /// allowed with `+@all`.
    others: bool,
}

fn index(name: &str) -> Option<usize> {
    COMMANDS.binary_search_by(|(n, _)| n.cmp(&name)).ok()
}

fn category(name: &str) -> Option<u32> {
    if name == "all" {
        return Some(u32::MAX);
    }
    CATEGORIES
        .iter()
        .position(|c| *c == name)
        .map(|i| 1u32 << i)
}

impl Commands {
    /// No command (`-@all`), as a new user starts.
    pub fn none() -> Commands {
        Commands {
            allowed: vec![0; COMMANDS.len().div_ceil(64)],
            others: false,
        }
    }

    /// Every command (`+@all`).
    pub fn everything() -> Commands {
        Commands {
            allowed: vec![u64::MAX; COMMANDS.len().div_ceil(64)],
            others: true,
        }
    }

    fn set(&mut self, i: usize, on: bool) {
        if let Some(word) = self.allowed.get_mut(i / 64) {
            if on {
                *word |= 1 << (i % 64);
            } else {
                *word &= !(1 << (i % 64));
            }
        }
    }

    fn get(&self, i: usize) -> bool {
        self.allowed
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Parses rules separated by spaces; the error names the first rule
    /// Redis would refuse.
    pub fn parse(rules: &str) -> Result<Commands, String> {
        let mut c = Commands::none();
        for rule in rules.split_whitespace() {
            c.apply(rule).map_err(|e| match e {
                RuleError::NotARule => format!("'{rule}': a rule starts with + or -"),
                RuleError::Unknown => match rule.split_once('@') {
                    Some((_, cat)) => {
                        format!("'{rule}': unknown category '{cat}' (see ACL CAT)")
                    }
                    None => format!("'{rule}': unknown command '{}'", &rule[1..]),
                },
            })?;
        }
        Ok(c)
    }

    /// Applies one rule (`+get`, `-@write`, `allcommands`, ...).
    pub fn apply(&mut self, rule: &str) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        let (on, what) = match lower.as_str() {
            "allcommands" => (true, "@all"),
            "nocommands" => (false, "@all"),
            r => match r.split_at_checked(1) {
                Some(("+", w)) => (true, w),
                Some(("-", w)) => (false, w),
                _ => return Err(RuleError::NotARule),
            },
        };
        if let Some(cat) = what.strip_prefix('@') {
            let bits = category(cat).ok_or(RuleError::Unknown)?;
            for (i, (_, cats)) in COMMANDS.iter().enumerate() {
                if bits == u32::MAX || cats & bits != 0 {
                    self.set(i, on);
                }
            }
            if bits == u32::MAX {
                self.others = on;
            }
            return Ok(());
        }
        let i = index(what).ok_or(RuleError::Unknown)?;
        self.set(i, on);
        if !what.contains('|') {
            // A whole command: its subcommands with it.
            let prefix = format!("{what}|");
            for (j, (n, _)) in COMMANDS.iter().enumerate() {
                if n.starts_with(&prefix) {
                    self.set(j, on);
                }
            }
        }
        Ok(())
    }

    /// Whether commands keyway may learn later are allowed: set by
    /// `+@all`, as Redis's reserved bit says.
    pub fn future(&self) -> bool {
        self.others
    }

    /// Whether every command is allowed.
    pub fn all(&self) -> bool {
        self.others && (0..COMMANDS.len()).all(|i| self.get(i))
    }

    /// Whether `name` (lower case), with its first argument `sub`, may run;
    /// the name Redis's error gives (`client|kill`) when not.
    pub fn allows(&self, name: &str, sub: Option<&[u8]>) -> Result<(), String> {
        if let Some(sub) = sub {
            let full = format!(
                "{name}|{}",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            );
            if let Some(i) = index(&full) {
                return if self.get(i) { Ok(()) } else { Err(full) };
            }
        }
        match index(name) {
            Some(i) if self.get(i) => Ok(()),
            Some(_) => Err(name.to_string()),
            None if self.others => Ok(()),
            None => Err(name.to_string()),
        }
    }
}

/// Why a command rule was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    /// Not `+...`, `-...`, `allcommands` or `nocommands`.
    NotARule,
    /// No such command, subcommand or category.
    Unknown,
}

/// The commands (and subcommands, as `container|sub`) of a category, in
/// the table's order; None for an unknown category.
pub fn category_commands(name: &str) -> Option<Vec<&'static str>> {
    let bits = category(&name.to_ascii_lowercase()).filter(|b| *b != u32::MAX)?;
    Some(
        COMMANDS
            .iter()
            .filter(|(_, c)| c & bits != 0)
            .map(|(n, _)| *n)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order_to_commands_and_subcommands() {
        let c = Commands::parse("+@all -@dangerous -get").unwrap();
        assert_eq!(c.allows("get", None), Err("get".into()));
        assert_eq!(c.allows("set", Some(b"k")), Ok(()));
        assert_eq!(c.allows("client", Some(b"KILL")), Err("client|kill".into()));
        assert_eq!(c.allows("client", Some(b"id")), Ok(()));
        assert_eq!(c.allows("keys", None), Err("keys".into()));
        let c = Commands::parse("-@all +get +client|id").unwrap();
        assert_eq!(c.allows("get", None), Ok(()));
        assert_eq!(c.allows("client", Some(b"id")), Ok(()));
        assert_eq!(c.allows("client", Some(b"list")), Err("client|list".into()));
        assert!(Commands::parse("+@all").unwrap().all());
        assert!(!Commands::parse("+@all -flushall").unwrap().all());
        assert!(Commands::parse("+@nosuch").is_err());
        assert!(Commands::parse("+nosuch").is_err());
        assert!(Commands::parse("get").is_err());
        assert!(
            category_commands("dangerous")
                .unwrap()
                .contains(&"client|kill")
        );
        assert!(category_commands("all").is_none());
    }
}

//! The bodies of keyway's fuzz targets, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` (coverage-guided, `scripts/fuzz.sh`) and by
//! `tests/fuzz_replay.rs`, which replays the committed seeds and a fixed
//! number of inputs from a fixed seed in `cargo test`.
//!
//! Each target panics on what must never happen, which the fuzzer records
//! as a crash: a panic inside keyway (the memory backend's net turns one
//! into `-ERR internal error`, counted, so the count is checked), a request
//! decoded differently from its own bytes, a key position outside the
//! command, a buffer that grew past what arrived.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use keyway::backend::Command;
use keyway::backend::memory::{MemoryBackend, MemoryConfig};
use keyway::wire::command::{self, CommandSpec};
use keyway::wire::protocol::{RequestCodec, encode_multibulk, parse_i64, split_args};
use keyway::wire::reply::Reply;
use tokio_util::codec::Decoder;

/// Reads choices from fuzz input; past its end, zeros.
pub struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let v = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(v) % n
    }

    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        let start = self.at.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.at = start + n;
        &self.data[start..end]
    }
}

/// The request codec: any bytes, cut anywhere, authenticated or not. Every
/// request decoded is what its own bytes decode to, and the buffer never
/// holds much more than what came.
pub fn codec(data: &[u8]) {
    let mut input = Input::new(data);
    let authenticated = input.byte() & 1 == 0;
    let step = usize::from(input.byte()).max(1);
    let body = &data[data.len().min(2)..];
    let mut codec = RequestCodec::new(1 << 20);
    codec.set_authenticated(authenticated);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for chunk in body.chunks(step) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(req)) => {
                    assert!(!req.args.is_empty(), "a request without a name");
                    if !authenticated {
                        // Multibulk requests are bounded per argument;
                        // inline ones (as in Redis) only by their line.
                        let bytes: usize = req.args.iter().map(|a| a.len()).sum();
                        assert!(
                            bytes <= 64 * 1024
                                || req
                                    .args
                                    .iter()
                                    .all(|a| a.len() <= keyway::wire::protocol::UNAUTH_MAX_BULK)
                                    && req.args.len() <= keyway::wire::protocol::UNAUTH_MAX_ARGS
                        );
                    }
                    // Its bytes (or, inline, their multibulk form) decode
                    // to the same arguments.
                    let mut again = BytesMut::from(&req.raw[..]);
                    let mut fresh = RequestCodec::new(1 << 20);
                    let back = fresh.decode(&mut again).ok().flatten();
                    assert_eq!(back.map(|r| r.args), Some(req.args.clone()));
                    // Its multibulk form is what keyway forwards.
                    assert!(
                        encode_multibulk(&req.args).len() >= req.raw.len() || req.raw[0] != b'*'
                    );
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // What is buffered came in; room grows at most in steps.
        assert!(
            buf.capacity() <= 2 * (fed + (1 << 17)),
            "{} bytes reserved for {fed} fed",
            buf.capacity()
        );
    }
}

/// Splits input into arguments at 0xff bytes.
fn args_of(data: &[u8]) -> Vec<Bytes> {
    data.split(|&b| b == 0xff)
        .map(Bytes::copy_from_slice)
        .collect()
}

/// The command table and argument helpers: key positions always inside
/// the command and agreeing with `single_key`, integers parsed as Redis
/// parses them, inline splitting and glob matching total.
pub fn command_table(data: &[u8]) {
    let table = command::table();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut args = args_of(rest);
    let spec: &CommandSpec = &table[usize::from(pick) % table.len()];
    args.insert(0, Bytes::from_static(spec.name.as_bytes()));
    let positions = spec.key_positions(&args);
    assert!(positions.len() < args.len());
    assert!(positions.iter().all(|&p| p > 0 && p < args.len()));
    if let Some(p) = spec.single_key(args.len()) {
        assert_eq!(positions, vec![p]);
    }
    let _ = spec.arity_ok(args.len());
    for a in &args {
        if let Some(n) = parse_i64(a) {
            // Redis's canonical form only: it prints back the same.
            assert_eq!(n.to_string().as_bytes(), &a[..]);
        }
        let _ = keyway::wire::util::parse_f64(a);
        let _ = split_args(a);
    }
    if args.len() >= 3 {
        let _ = keyway::wire::util::glob_match(&args[1], &args[2]);
    }
    let _ = command::lookup(rest);
}

/// Words that commands take as options, so that random commands reach
/// past their argument checks.
const WORDS: &[&str] = &[
    "NX",
    "XX",
    "GT",
    "LT",
    "CH",
    "INCR",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "GET",
    "PERSIST",
    "WITHSCORES",
    "WITHSCORE",
    "WITHVALUES",
    "LIMIT",
    "COUNT",
    "MATCH",
    "TYPE",
    "BYSCORE",
    "BYLEX",
    "REV",
    "LEFT",
    "RIGHT",
    "BEFORE",
    "AFTER",
    "MIN",
    "MAX",
    "SUM",
    "WEIGHTS",
    "AGGREGATE",
    "STORE",
    "BY",
    "ALPHA",
    "ASC",
    "DESC",
    "RANK",
    "MAXLEN",
    "IDX",
    "LEN",
    "MINMATCHLEN",
    "WITHMATCHLEN",
    "BIT",
    "BYTE",
    "OVERFLOW",
    "WRAP",
    "SAT",
    "FAIL",
    "SET",
    "INCRBY",
    "u8",
    "i16",
    "u63",
    "i64",
    "#1",
    "ENCODING",
    "FREQ",
    "IDLETIME",
    "REFCOUNT",
    "USAGE",
    "SAMPLES",
    "STREAMS",
    "BLOCK",
    "NOACK",
    "GROUP",
    "CREATE",
    "SETID",
    "DESTROY",
    "CREATECONSUMER",
    "DELCONSUMER",
    "MKSTREAM",
    "ENTRIESREAD",
    "IDLE",
    "TIME",
    "RETRYCOUNT",
    "FORCE",
    "JUSTID",
    "LASTID",
    "MINID",
    "FULL",
    "CONSUMERS",
    "GROUPS",
    "STREAM",
    "FROMMEMBER",
    "FROMLONLAT",
    "BYRADIUS",
    "BYBOX",
    "km",
    "m",
    "mi",
    "WITHCOORD",
    "WITHDIST",
    "WITHHASH",
    "ANY",
    "STOREDIST",
    "NOVALUES",
    "AND",
    "OR",
    "XOR",
    "NOT",
    "CHANNELS",
    "NUMSUB",
    "NUMPAT",
    "LOAD",
    "EXISTS",
    "FLUSH",
    "HELP",
    "nosort",
    "*",
    "$",
    ">",
    "+",
    "-",
    "(",
    "[a",
    "(1",
    "+inf",
    "-inf",
    "0-0",
    "0-1",
    "1-*",
    "18446744073709551615-18446744073709551615",
    "~",
    "=",
    "w_*",
    "*->f",
    "#",
];

/// Lua bodies EVAL runs: fixed, so that a script never loops, but calling
/// back into random commands through ARGV.
const SCRIPTS: &[&str] = &[
    "return redis.call(ARGV[1], KEYS[1], ARGV[2])",
    "return redis.pcall(ARGV[1], KEYS[1], ARGV[2], ARGV[3])",
    "return {KEYS[1], ARGV[1], 1, 1.5, true, false}",
    "return redis.call('GET', KEYS[1])",
    "return cjson.encode({ARGV[1], {a = 1}})",
    "return cjson.decode(ARGV[1])",
    "return cmsgpack.unpack(ARGV[1])",
    "return cmsgpack.pack(ARGV[1], 1, {2})",
    "return redis.sha1hex(ARGV[1])",
    "return tonumber(ARGV[1])",
    "return string.rep(ARGV[1], 3)",
];

/// An argument: a key, a number, a word, bytes from the input.
pub fn arg(input: &mut Input) -> Bytes {
    match input.below(16) {
        0..=3 => Bytes::from(format!("k{}", input.below(4))),
        4 | 5 => Bytes::from((input.below(21) as i64 - 5).to_string()),
        6 => {
            const EDGES: &[&str] = &[
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "4294967296",
                "536870911",
                "536870912",
                "-4611686018427387904",
                "1.5",
                "-0.0",
                "1e308",
                "nan",
                "inf",
                "0x10",
                "",
            ];
            Bytes::from_static(EDGES[input.below(EDGES.len())].as_bytes())
        }
        7..=10 => Bytes::from_static(WORDS[input.below(WORDS.len())].as_bytes()),
        11 => Bytes::from(format!("{}-{}", input.below(5), input.below(5))),
        _ => Bytes::copy_from_slice(input.bytes(12)),
    }
}

/// The commands the memory backend runs, but those that never end (a
/// blocking command's wait is not run here) or read the clock's whims.
pub fn memory_commands() -> Vec<&'static CommandSpec> {
    let backend = MemoryBackend::new(&MemoryConfig::default());
    use keyway::backend::Backend;
    command::table()
        .iter()
        .filter(|c| backend.supports(c) && !c.has(command::LOCAL))
        .filter(|c| !c.has(command::PUBSUB) || matches!(c.name, "publish" | "pubsub"))
        .filter(|c| !matches!(c.name, "multi" | "exec" | "discard" | "watch" | "unwatch"))
        .collect()
}

/// A random command for the memory backend.
pub fn memory_command(input: &mut Input, commands: &[&'static CommandSpec]) -> Command {
    let spec = commands[input.below(commands.len())];
    let mut args = vec![Bytes::from_static(spec.name.as_bytes())];
    if matches!(spec.name, "eval" | "eval_ro") {
        args.push(Bytes::from_static(
            SCRIPTS[input.below(SCRIPTS.len())].as_bytes(),
        ));
        args.push(Bytes::from_static(b"1"));
    }
    // Enough arguments for the arity, and a few more at random.
    let need = spec.arity.unsigned_abs() as usize;
    let n = need.saturating_sub(args.len()) + input.below(5);
    for _ in 0..n {
        args.push(arg(input));
    }
    if spec.arity > 0 {
        args.truncate(need);
    }
    Command::internal(spec, args)
}

/// The memory backend running random commands: every command answered,
/// none panicking.
pub fn memory(data: &[u8]) {
    thread_local! {
        static COMMANDS: Vec<&'static CommandSpec> = memory_commands();
    }
    let backend = MemoryBackend::new(&MemoryConfig::default());
    let panics = keyway::wire::metrics::metrics().internal_errors();
    let mut input = Input::new(data);
    COMMANDS.with(|commands| {
        while !input.done() {
            let batch: Vec<Command> = (0..1 + input.below(3))
                .map(|_| memory_command(&mut input, commands))
                .collect();
            let replies = backend.run(&batch);
            assert_eq!(replies.len(), batch.len());
            for r in &replies {
                let _ = r.size();
                let mut out = BytesMut::new();
                r.encode(false, &mut out);
                r.encode(true, &mut out);
            }
            if keyway::wire::metrics::metrics().internal_errors() != panics {
                let names: Vec<&str> = batch.iter().map(|c| c.spec.name).collect();
                let shown: Vec<Vec<String>> = batch
                    .iter()
                    .map(|c| {
                        c.args
                            .iter()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect()
                    })
                    .collect();
                panic!("a command panicked in {names:?}: {shown:?}");
            }
            let _: Option<&Reply> = replies.first();
        }
    });
}

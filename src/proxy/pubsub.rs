//! One client's subscriptions, across every backend its channels live on.
//!
//! Channels are routed by prefix exactly like keys (and rewritten the same
//! way). keyway opens one subscriber per backend the client needs
//! (`Backend::subscriber`), waits for the backends to confirm each
//! SUBSCRIBE, and answers the client with its own counts, since the client
//! sees one server. Messages from every backend arrive on one channel and
//! are written to the client as they come.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::backend::{Backend, Command, PushReceiver, Pushes, Queue, Subscriber};
use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{self, CommandSpec};
use crate::wire::error::{CmdError, lossy};
use crate::wire::limit::OutputLimit;
use crate::wire::reply::Reply;
use crate::wire::util::bytes;
use bytes::Bytes;

/// How long keyway waits for a backend to confirm a subscription.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

struct Feed {
    backend: Arc<dyn Backend>,
    /// Which of the backend's servers, for shard channels
    /// (`Backend::shard_of`); None for the backend's one subscriber.
    shard: Option<usize>,
    sub: Box<dyn Subscriber>,
    /// Backend channel, pattern and shard channel names to the client's.
    channels: HashMap<Bytes, Bytes>,
    patterns: HashMap<Bytes, Bytes>,
    shard_channels: HashMap<Bytes, Bytes>,
    /// Namespaces whose channels reached this feed, to name pmessage
    /// channels as the client knows them.
    namespaces: Vec<Arc<Namespace>>,
}

/// What a message from a backend means for the client.
pub enum Push {
    Deliver(Reply),
    /// A backend's subscriber failed: its subscriptions are gone, so the
    /// client is told and disconnected, to resubscribe.
    Lost(Reply),
}

pub struct PubSub {
    tx: Pushes,
    rx: PushReceiver,
    feeds: Vec<Option<Feed>>,
    /// Client channel -> (feed, backend channel).
    channels: HashMap<Bytes, (usize, Bytes)>,
    /// Client pattern -> (feed, backend pattern) for each backend it spans.
    patterns: HashMap<Bytes, Vec<(usize, Bytes)>>,
    /// Client shard channel -> (feed, backend channel).
    shard_channels: HashMap<Bytes, (usize, Bytes)>,
    /// Messages that arrived while waiting for confirmations.
    waiting: VecDeque<Push>,
}

impl PubSub {
    /// Subscriptions of a client whose queued bytes are counted in
    /// `queued`, held to `limit` (its pubsub output limit).
    pub fn new(queued: Arc<AtomicUsize>, limit: OutputLimit) -> Self {
        let (tx, rx) = Pushes::channel(queued, limit);
        PubSub {
            tx,
            rx,
            feeds: Vec::new(),
            channels: HashMap::new(),
            patterns: HashMap::new(),
            shard_channels: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }
}

fn push(kind: &'static str, target: Reply, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::Bulk(Bytes::from_static(kind.as_bytes())),
        target,
        Reply::Int(count as i64),
    ])
}

/// The literal start of a glob pattern.
fn literal_prefix(p: &[u8]) -> &[u8] {
    let end = p
        .iter()
        .position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(p.len());
    &p[..end]
}

impl PubSub {
    /// The client's queue of messages, which says when it broke its limit.
    pub fn overflow(&self) -> Arc<Queue> {
        self.rx.queue()
    }

    /// Subscribed to anything: the connection is in pub/sub mode.
    pub fn active(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty() || !self.shard_channels.is_empty()
    }

    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Shard channels are counted apart from the others, as in Redis.
    fn shard_count(&self) -> usize {
        self.shard_channels.len()
    }

    /// The next message for the client. Cancel-safe.
    pub async fn next(&mut self) -> Push {
        loop {
            if let Some(p) = self.waiting.pop_front() {
                return p;
            }
            let Some((tag, reply)) = self.rx.recv().await else {
                return Push::Lost(Reply::error("ERR subscriptions closed"));
            };
            if let Some(p) = self.translate(tag, reply) {
                return p;
            }
        }
    }

    /// A backend's push as the client must see it; None for what keyway
    /// answers itself (confirmations) or no longer wants.
    fn translate(&mut self, tag: usize, reply: Reply) -> Option<Push> {
        let items = match reply {
            Reply::Array(items) | Reply::Push(items) => items,
            Reply::Error(_) => {
                self.drop_feed(tag);
                return Some(Push::Lost(reply));
            }
            _ => return None,
        };
        let feed = self.feeds.get(tag)?.as_ref()?;
        let kind = match items.first() {
            Some(Reply::Bulk(k)) => k.clone(),
            _ => return None,
        };
        match (&kind[..], &items[..]) {
            (b"message", [_, Reply::Bulk(ch), payload]) => {
                let client = feed.channels.get(ch)?.clone();
                self.channels.contains_key(&client).then(|| {
                    Push::Deliver(Reply::Push(vec![
                        Reply::Bulk(kind),
                        Reply::Bulk(client),
                        payload.clone(),
                    ]))
                })
            }
            (b"smessage", [_, Reply::Bulk(ch), payload]) => {
                let client = feed.shard_channels.get(ch)?.clone();
                self.shard_channels.contains_key(&client).then(|| {
                    Push::Deliver(Reply::Push(vec![
                        Reply::Bulk(kind),
                        Reply::Bulk(client),
                        payload.clone(),
                    ]))
                })
            }
            (b"pmessage", [_, Reply::Bulk(pat), Reply::Bulk(ch), payload]) => {
                let client = feed.patterns.get(pat)?.clone();
                // A channel no subscribed namespace owns is another
                // application's on a shared server: never shown.
                let channel = feed.namespaces.iter().find_map(|ns| ns.from_backend(ch))?;
                self.patterns.contains_key(&client).then(|| {
                    Push::Deliver(Reply::Push(vec![
                        Reply::Bulk(kind),
                        Reply::Bulk(client),
                        Reply::Bulk(channel),
                        payload.clone(),
                    ]))
                })
            }
            _ => None,
        }
    }

    fn drop_feed(&mut self, tag: usize) {
        if let Some(slot) = self.feeds.get_mut(tag) {
            *slot = None;
        }
        self.channels.retain(|_, (f, _)| *f != tag);
        self.shard_channels.retain(|_, (f, _)| *f != tag);
        self.patterns.retain(|_, feeds| {
            feeds.retain(|(f, _)| *f != tag);
            !feeds.is_empty()
        });
    }

    /// The feed for a backend, opened on first use; for a shard channel
    /// (given in the backend's name), the feed of the server that owns it.
    async fn feed(
        &mut self,
        ns: &Arc<Namespace>,
        shard_channel: Option<&Bytes>,
    ) -> Result<usize, CmdError> {
        let shard = shard_channel.map(|ch| ns.backend.shard_of(ch));
        let found = self.feeds.iter().position(|f| {
            f.as_ref()
                .is_some_and(|f| Arc::ptr_eq(&f.backend, &ns.backend) && f.shard == shard)
        });
        let tag = match found {
            Some(tag) => tag,
            None => {
                let name = if shard.is_some() {
                    "ssubscribe"
                } else {
                    "subscribe"
                };
                if !ns.backend.supports(command::known(name)) {
                    return Err(CmdError::Unsupported {
                        command: name.to_uppercase(),
                        namespace: ns.name.clone(),
                        backend: ns.backend.kind().into(),
                    });
                }
                let tag = self.feeds.len();
                let sub = match shard_channel {
                    Some(ch) => {
                        let tx = self.tx.clone();
                        ns.backend.shard_subscriber(tag, tx, ch.clone()).await?
                    }
                    None => ns.backend.subscriber(tag, self.tx.clone()).await?,
                };
                self.feeds.push(Some(Feed {
                    backend: ns.backend.clone(),
                    shard,
                    sub,
                    channels: HashMap::new(),
                    patterns: HashMap::new(),
                    shard_channels: HashMap::new(),
                    namespaces: Vec::new(),
                }));
                tag
            }
        };
        if let Some(Some(f)) = self.feeds.get_mut(tag) {
            if !f.namespaces.iter().any(|n| Arc::ptr_eq(n, ns)) {
                f.namespaces.push(ns.clone());
            }
        }
        Ok(tag)
    }

    async fn send(&mut self, tag: usize, name: &str, targets: Vec<Bytes>) -> Result<(), CmdError> {
        let Some(Some(feed)) = self.feeds.get_mut(tag) else {
            return Err(CmdError::msg("ERR subscription lost"));
        };
        let mut args = vec![bytes(&name.to_uppercase())];
        args.extend(targets);
        feed.sub
            .send(Command::internal(command::known(name), args))
            .await
    }

    /// Waits until each feed confirmed as many subscriptions as asked.
    async fn confirmed(
        &mut self,
        mut expected: HashMap<usize, usize>,
        kind: &[u8],
    ) -> Result<(), CmdError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        while expected.values().any(|n| *n > 0) {
            let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some((tag, reply))) = next else {
                return Err(CmdError::msg(
                    "ERR backend did not confirm the subscription in time",
                ));
            };
            let is_confirm = matches!(&reply, Reply::Array(items) | Reply::Push(items)
                if matches!(items.first(), Some(Reply::Bulk(k)) if &k[..] == kind));
            if is_confirm {
                if let Some(n) = expected.get_mut(&tag) {
                    *n = n.saturating_sub(1);
                }
            } else if let Some(p) = self.translate(tag, reply) {
                let lost = matches!(p, Push::Lost(_));
                self.waiting.push_back(p);
                if lost {
                    return Err(CmdError::msg("ERR backend subscription lost"));
                }
            }
        }
        Ok(())
    }

    /// SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE: one reply per
    /// channel or pattern, as Redis answers.
    pub async fn execute(
        &mut self,
        router: &Router,
        spec: &CommandSpec,
        args: &[Bytes],
    ) -> Vec<Reply> {
        match spec.name {
            "subscribe" => self.subscribe(router, &args[1..]).await,
            "psubscribe" => self.psubscribe(router, &args[1..]).await,
            "unsubscribe" => self.unsubscribe(&args[1..]).await,
            "ssubscribe" => self.ssubscribe(router, &args[1..]).await,
            "sunsubscribe" => self.sunsubscribe(&args[1..]).await,
            _ => self.punsubscribe(&args[1..]).await,
        }
    }

    async fn subscribe(&mut self, router: &Router, channels: &[Bytes]) -> Vec<Reply> {
        let mut per_feed: HashMap<usize, Vec<Bytes>> = HashMap::new();
        let mut failed: HashMap<Bytes, Reply> = HashMap::new();
        let mut added: HashSet<Bytes> = HashSet::new();
        for ch in channels {
            if self.channels.contains_key(ch) {
                continue;
            }
            let Some(ns) = router.route(ch).cloned() else {
                failed.insert(ch.clone(), CmdError::NoNamespace(lossy(ch, 128)).into());
                continue;
            };
            let tag = match self.feed(&ns, None).await {
                Ok(tag) => tag,
                Err(e) => {
                    failed.insert(ch.clone(), e.into());
                    continue;
                }
            };
            let backend_ch = if ns.rewrites() {
                ns.to_backend(ch)
            } else {
                ch.clone()
            };
            if let Some(Some(f)) = self.feeds.get_mut(tag) {
                f.channels.insert(backend_ch.clone(), ch.clone());
            }
            self.channels.insert(ch.clone(), (tag, backend_ch.clone()));
            added.insert(ch.clone());
            per_feed.entry(tag).or_default().push(backend_ch);
        }
        let mut expected = HashMap::new();
        for (tag, targets) in per_feed {
            expected.insert(tag, targets.len());
            if let Err(e) = self.send(tag, "subscribe", targets).await {
                self.drop_feed(tag);
                return vec![e.into()];
            }
        }
        if let Err(e) = self.confirmed(expected, b"subscribe").await {
            return vec![e.into()];
        }
        // Counts as Redis gives them: the total after each channel, in order.
        let mut count = self.count() - added.len();
        channels
            .iter()
            .map(|ch| match failed.get(ch) {
                Some(e) => e.clone(),
                None => {
                    if added.remove(ch) {
                        count += 1;
                    }
                    push("subscribe", Reply::Bulk(ch.clone()), count)
                }
            })
            .collect()
    }

    /// SSUBSCRIBE: each shard channel on the feed of the server that owns
    /// it. Redis refuses channels of several slots in one call; keyway's
    /// backends may span servers, so each goes to its own.
    async fn ssubscribe(&mut self, router: &Router, channels: &[Bytes]) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(channels.len());
        for ch in channels {
            if self.shard_channels.contains_key(ch) {
                replies.push(push(
                    "ssubscribe",
                    Reply::Bulk(ch.clone()),
                    self.shard_count(),
                ));
                continue;
            }
            let Some(ns) = router.route(ch).cloned() else {
                replies.push(CmdError::NoNamespace(lossy(ch, 128)).into());
                continue;
            };
            let backend_ch = if ns.rewrites() {
                ns.to_backend(ch)
            } else {
                ch.clone()
            };
            let tag = match self.feed(&ns, Some(&backend_ch)).await {
                Ok(tag) => tag,
                Err(e) => {
                    replies.push(e.into());
                    continue;
                }
            };
            if let Some(Some(f)) = self.feeds.get_mut(tag) {
                f.shard_channels.insert(backend_ch.clone(), ch.clone());
            }
            self.shard_channels
                .insert(ch.clone(), (tag, backend_ch.clone()));
            if let Err(e) = self.send(tag, "ssubscribe", vec![backend_ch]).await {
                self.drop_feed(tag);
                replies.push(e.into());
                return replies;
            }
            if let Err(e) = self
                .confirmed(HashMap::from([(tag, 1)]), b"ssubscribe")
                .await
            {
                replies.push(e.into());
                return replies;
            }
            replies.push(push(
                "ssubscribe",
                Reply::Bulk(ch.clone()),
                self.shard_count(),
            ));
        }
        replies
    }

    async fn sunsubscribe(&mut self, channels: &[Bytes]) -> Vec<Reply> {
        let targets: Vec<Bytes> = if channels.is_empty() {
            let mut all: Vec<Bytes> = self.shard_channels.keys().cloned().collect();
            all.sort_unstable();
            all
        } else {
            channels.to_vec()
        };
        if targets.is_empty() {
            return vec![push("sunsubscribe", Reply::Nil, self.shard_count())];
        }
        let mut replies = Vec::with_capacity(targets.len());
        for ch in targets {
            if let Some((tag, backend_ch)) = self.shard_channels.remove(&ch) {
                if let Some(Some(f)) = self.feeds.get_mut(tag) {
                    f.shard_channels.remove(&backend_ch);
                }
                let _ = self.send(tag, "sunsubscribe", vec![backend_ch]).await;
            }
            replies.push(push("sunsubscribe", Reply::Bulk(ch), self.shard_count()));
        }
        self.close_idle_feeds();
        replies
    }

    async fn psubscribe(&mut self, router: &Router, patterns: &[Bytes]) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if self.patterns.contains_key(pattern) {
                replies.push(push(
                    "psubscribe",
                    Reply::Bulk(pattern.clone()),
                    self.count(),
                ));
                continue;
            }
            let literal = literal_prefix(pattern);
            let owner = router.route(literal).cloned();
            // Every namespace whose channels the pattern can match.
            let candidates: Vec<Arc<Namespace>> = router
                .namespaces
                .iter()
                .filter(|ns| {
                    ns.prefix.starts_with(literal)
                        || owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, ns))
                })
                .cloned()
                .collect();
            let mut targets: Vec<(usize, Bytes)> = Vec::new();
            let mut error = None;
            for ns in &candidates {
                if ns.rewrites() && !literal.starts_with(&ns.prefix) {
                    // A pattern reaching into a rewritten namespace from
                    // outside cannot be rewritten; that namespace is skipped.
                    continue;
                }
                let tag = match self.feed(ns, None).await {
                    Ok(tag) => tag,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                };
                let bp = if ns.rewrites() {
                    ns.to_backend(pattern)
                } else {
                    pattern.clone()
                };
                if !targets.contains(&(tag, bp.clone())) {
                    targets.push((tag, bp));
                }
            }
            if let Some(e) = error {
                replies.push(e.into());
                continue;
            }
            if targets.is_empty() {
                replies.push(CmdError::NoNamespace(lossy(pattern, 128)).into());
                continue;
            }
            let mut expected = HashMap::new();
            for (tag, bp) in &targets {
                if let Some(Some(f)) = self.feeds.get_mut(*tag) {
                    f.patterns.insert(bp.clone(), pattern.clone());
                }
                *expected.entry(*tag).or_insert(0) += 1;
            }
            self.patterns.insert(pattern.clone(), targets.clone());
            for (tag, bp) in targets {
                if let Err(e) = self.send(tag, "psubscribe", vec![bp]).await {
                    self.drop_feed(tag);
                    return vec![e.into()];
                }
            }
            if let Err(e) = self.confirmed(expected, b"psubscribe").await {
                return vec![e.into()];
            }
            replies.push(push(
                "psubscribe",
                Reply::Bulk(pattern.clone()),
                self.count(),
            ));
        }
        replies
    }

    async fn unsubscribe(&mut self, channels: &[Bytes]) -> Vec<Reply> {
        let targets: Vec<Bytes> = if channels.is_empty() {
            let mut all: Vec<Bytes> = self.channels.keys().cloned().collect();
            all.sort_unstable();
            all
        } else {
            channels.to_vec()
        };
        if targets.is_empty() {
            return vec![push("unsubscribe", Reply::Nil, self.count())];
        }
        let mut replies = Vec::with_capacity(targets.len());
        for ch in targets {
            if let Some((tag, backend_ch)) = self.channels.remove(&ch) {
                if let Some(Some(f)) = self.feeds.get_mut(tag) {
                    f.channels.remove(&backend_ch);
                }
                // The backend's confirmation is dropped when it arrives.
                let _ = self.send(tag, "unsubscribe", vec![backend_ch]).await;
            }
            replies.push(push("unsubscribe", Reply::Bulk(ch), self.count()));
        }
        self.close_idle_feeds();
        replies
    }

    async fn punsubscribe(&mut self, patterns: &[Bytes]) -> Vec<Reply> {
        let targets: Vec<Bytes> = if patterns.is_empty() {
            let mut all: Vec<Bytes> = self.patterns.keys().cloned().collect();
            all.sort_unstable();
            all
        } else {
            patterns.to_vec()
        };
        if targets.is_empty() {
            return vec![push("punsubscribe", Reply::Nil, self.count())];
        }
        let mut replies = Vec::with_capacity(targets.len());
        for p in targets {
            for (tag, bp) in self.patterns.remove(&p).unwrap_or_default() {
                if let Some(Some(f)) = self.feeds.get_mut(tag) {
                    f.patterns.remove(&bp);
                }
                let _ = self.send(tag, "punsubscribe", vec![bp]).await;
            }
            replies.push(push("punsubscribe", Reply::Bulk(p), self.count()));
        }
        self.close_idle_feeds();
        replies
    }

    /// Drops subscribers left with nothing, closing their connections.
    fn close_idle_feeds(&mut self) {
        for slot in &mut self.feeds {
            if slot.as_ref().is_some_and(|f| {
                f.channels.is_empty() && f.patterns.is_empty() && f.shard_channels.is_empty()
            }) {
                *slot = None;
            }
        }
    }
}

//! The multiplexed pipe: one upstream connection owned by a task, shared
//! by every client of a backend (see the module above).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::{debug, info, warn};

use super::{
    BACKOFF_MAX, BACKOFF_MIN, Conn, Endpoint, MAX_JOBS_PER_WRITE, READ_CHUNK, decode, io_reason,
    unavailable,
};
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;

/// Commands for one pipe, from one caller.
struct Job {
    out: Bytes,
    inspect: Vec<bool>,
    reply: oneshot::Sender<Vec<Reply>>,
    /// When the caller must have an answer: the pipe's task answers every
    /// job by then, so that callers need no timer of their own (one per
    /// call cost a timer-wheel insertion and often a driver wake-up).
    deadline: Instant,
}

impl Job {
    fn fail(self, name: &str, reason: &str) {
        let _ = self
            .reply
            .send(vec![unavailable(name, reason); self.inspect.len()]);
    }
}

/// A job written and waiting for its replies.
struct Pending {
    inspect: Vec<bool>,
    got: Vec<Reply>,
    /// None once the caller was answered with a timeout: the replies still
    /// come, and are read and dropped to keep the connection in step.
    reply: Option<oneshot::Sender<Vec<Reply>>>,
    deadline: Instant,
}

impl Pending {
    /// Answers the caller now: the replies already read (their commands
    /// ran), then an error for each of the rest.
    fn answer(&mut self, name: &str, reason: &str) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let mut replies = self.got.clone();
        replies.resize(self.inspect.len(), unavailable(name, reason));
        let _ = reply.send(replies);
    }
}

/// A shared, multiplexed upstream connection and the task that owns it.
pub struct Pipe {
    tx: mpsc::Sender<Job>,
    endpoint: Arc<Endpoint>,
}

impl Pipe {
    /// Starts the pipe's task; it connects at once and lives until the pipe
    /// is dropped. Must be called inside a tokio runtime.
    pub fn start(endpoint: Arc<Endpoint>, resp3: bool) -> Pipe {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_pipe(endpoint.clone(), resp3, rx));
        Pipe { tx, endpoint }
    }

    /// Sends encoded commands and returns one reply per entry of `inspect`,
    /// within the command timeout.
    pub async fn call(&self, out: Bytes, inspect: Vec<bool>) -> Vec<Reply> {
        let n = inspect.len();
        let name = &self.endpoint.name;
        let limit = self.endpoint.command_timeout;
        let deadline = Instant::now() + limit;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            out,
            inspect,
            reply,
            deadline,
        };
        let fail = |reason: &str| vec![unavailable(name, reason); n];
        // The timer here is only armed when the queue is full.
        match timeout_at(deadline, self.tx.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return fail("connection task stopped"),
            Err(_) => return fail(&late(limit)),
        }
        rx.await.unwrap_or_else(|_| fail("connection closed"))
    }
}

fn late(limit: Duration) -> String {
    format!("no reply within {} ms", limit.as_millis())
}

async fn run_pipe(endpoint: Arc<Endpoint>, resp3: bool, mut rx: mpsc::Receiver<Job>) {
    let name = endpoint.name.as_str();
    let mut backoff = BACKOFF_MIN;
    // Logged once per outage, not once per attempt.
    let mut down: Option<String> = None;
    // Jobs that arrived while connecting, written first once connected.
    let mut backlog: VecDeque<Job> = VecDeque::new();
    // When a connection was last given up for answering READONLY.
    let mut demoted_at: Option<Instant> = None;
    loop {
        let connected = {
            let connecting = endpoint.connect(resp3);
            tokio::pin!(connecting);
            loop {
                let expiry = backlog.front().map(|j| j.deadline);
                tokio::select! {
                    r = &mut connecting => break r,
                    job = rx.recv() => match job {
                        Some(job) => backlog.push_back(job),
                        None => return,
                    },
                    _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                        let now = Instant::now();
                        while backlog.front().is_some_and(|j| j.deadline <= now) {
                            if let Some(job) = backlog.pop_front() {
                                job.fail(name, &late(endpoint.command_timeout));
                            }
                        }
                    }
                }
            }
        };
        let reason = match connected {
            Ok(conn) => {
                if down.take().is_some() {
                    info!(backend = name, "upstream reconnected");
                    metrics().reconnected(name);
                } else {
                    debug!(backend = name, "upstream connected");
                }
                backoff = BACKOFF_MIN;
                let open = metrics().upstream(name);
                open.inc();
                endpoint.up.fetch_add(1, Ordering::Relaxed);
                let recycle = demoted_at.is_none_or(|t| t.elapsed() >= RECYCLE_MIN);
                let opened = Instant::now();
                let ended = serve(conn, &mut backlog, &mut rx, &endpoint, recycle).await;
                open.dec();
                endpoint.up.fetch_sub(1, Ordering::Relaxed);
                match ended {
                    Ended::Failed(reason) => reason,
                    // Closed while nothing was owed (the server's timeout,
                    // a restart): no caller lost anything, so a new
                    // connection is opened at once, and jobs that come
                    // meanwhile wait for it. One closed as soon as it was
                    // opened is a failure, with its backoff.
                    Ended::Closed if opened.elapsed() >= RECYCLE_MIN => {
                        debug!(backend = name, "upstream closed while idle; reconnecting");
                        continue;
                    }
                    Ended::Closed => "connection closed by server".to_string(),
                    Ended::Dropped => return,
                    Ended::Demoted => {
                        // Every job written was answered; the backlog is
                        // written on the new connection, not failed.
                        warn!(
                            backend = name,
                            "server answered READONLY (no longer the master); reconnecting"
                        );
                        metrics().reconnected(name);
                        demoted_at = Some(Instant::now());
                        continue;
                    }
                }
            }
            Err(reason) => reason,
        };
        if down.as_ref() != Some(&reason) {
            warn!(backend = name, %reason, "upstream unavailable; reconnecting");
            down = Some(reason.clone());
        }
        if let Ok(mut last) = endpoint.last_error.lock() {
            last.clone_from(&reason);
        }
        for job in backlog.drain(..) {
            job.fail(name, &reason);
        }
        // Until the next attempt, jobs fail at once rather than wait; but
        // a job that comes after the shortest backoff tries a connection
        // itself (a server back from a restart serves it at once).
        let failed_at = Instant::now();
        let until = failed_at + backoff;
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) if failed_at.elapsed() >= BACKOFF_MIN => {
                        backlog.push_back(job);
                        break;
                    }
                    Some(job) => job.fail(name, &reason),
                    None => return,
                },
                _ = sleep_until(until) => break,
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why [`serve`] gave up its connection.
enum Ended {
    /// The pipe was dropped.
    Dropped,
    /// The connection failed; jobs written but unanswered were failed.
    Failed(String),
    /// The server closed the connection while no reply was owed.
    Closed,
    /// The server answered READONLY: after a failover it is a replica now
    /// (a DNS name such as a managed Redis's primary endpoint, or Sentinel,
    /// then leads to the new master). Every job written was answered.
    Demoted,
}

/// The shortest time between two reconnects for READONLY, so that a url
/// that names a replica (every write refused) does not reconnect for each.
const RECYCLE_MIN: Duration = Duration::from_secs(1);

/// Whether a reply is Redis's refusal of a write by a replica.
pub fn is_readonly(reply: &[u8]) -> bool {
    reply.starts_with(b"-READONLY ")
}

/// Runs jobs on a connection until it fails, the pipe is dropped, or (when
/// `recycle`) the server answers READONLY; see [`Ended`].
async fn serve(
    conn: Conn,
    backlog: &mut VecDeque<Job>,
    rx: &mut mpsc::Receiver<Job>,
    endpoint: &Endpoint,
    recycle: bool,
) -> Ended {
    let Conn {
        io, mut buf, resp3, ..
    } = conn;
    let (mut rd, mut wr) = tokio::io::split(io);
    let (ptx, mut prx) = mpsc::unbounded_channel::<Pending>();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let limit = endpoint.command_timeout;
    let name = endpoint.name.as_str();

    // Jobs taken but not yet written. They live outside the writer so that
    // when the connection fails they go back to the backlog, and are
    // answered with the reason, rather than dropped.
    let mut jobs: Vec<Job> = backlog.drain(..).collect();
    // Jobs that arrived while a write was in progress.
    let mut arrived: VecDeque<Job> = VecDeque::new();
    // Set by the reader on READONLY: the writer writes nothing more, and the
    // reader ends once every job written is answered.
    let demoted = AtomicBool::new(false);
    // Set by the reader when the server closed with nothing owed.
    let mut closed_idle = false;

    let writer = async {
        let mut out = BytesMut::new();
        loop {
            jobs.extend(arrived.drain(..));
            if jobs.is_empty() {
                if rx.recv_many(&mut jobs, MAX_JOBS_PER_WRITE).await == 0 {
                    return None;
                }
                if jobs.len() < MAX_JOBS_PER_WRITE {
                    // Let the runtime poll the sockets once more before
                    // writing, so that clients whose requests have already
                    // arrived join this write. Each write wakes the server,
                    // and on a busy machine that wake-up costs more than the
                    // write itself: at pipeline 1 this raised throughput by
                    // about a tenth.
                    tokio::task::yield_now().await;
                    while jobs.len() < MAX_JOBS_PER_WRITE {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                }
            }
            if demoted.load(Ordering::Relaxed) {
                // The jobs taken stay in `jobs`, for the next connection.
                std::future::pending::<()>().await;
            }
            let now = Instant::now();
            for job in jobs.drain(..) {
                if job.reply.is_closed() {
                    continue;
                }
                if job.deadline <= now {
                    job.fail(name, &late(limit));
                    continue;
                }
                out.extend_from_slice(&job.out);
                let _ = ptx.send(Pending {
                    got: Vec::with_capacity(job.inspect.len()),
                    inspect: job.inspect,
                    reply: Some(job.reply),
                    deadline: job.deadline,
                });
            }
            // A server slow to take the write must not keep the jobs
            // queued behind it past their deadline: they are taken in
            // meanwhile, and answered when it passes.
            let mut at = 0;
            while at < out.len() {
                let expiry = arrived.front().map(|j| j.deadline);
                tokio::select! {
                    biased;
                    n = wr.write(&out[at..]) => match n {
                        Ok(0) => return Some("connection closed".into()),
                        Ok(n) => at += n,
                        Err(e) => return Some(io_reason(&e)),
                    },
                    job = rx.recv(), if arrived.len() < MAX_JOBS_PER_WRITE => match job {
                        Some(job) => arrived.push_back(job),
                        None => return None,
                    },
                    _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                        let now = Instant::now();
                        while arrived.front().is_some_and(|j| j.deadline <= now) {
                            if let Some(job) = arrived.pop_front() {
                                job.fail(name, &late(limit));
                            }
                        }
                    }
                }
            }
            out.clear();
        }
    };

    let reader = async {
        // One timer, re-armed only when it fires: it watches both the
        // oldest job's deadline and a server that sends nothing at all.
        let watchdog = sleep_until(Instant::now() + limit);
        tokio::pin!(watchdog);
        // When the server last sent something, or replies started being
        // owed after none were.
        let mut progress = Instant::now();
        loop {
            while let Some(p) = queue.front_mut() {
                let inspect = p.reply.is_some() && p.inspect[p.got.len()];
                if recycle && buf.first() == Some(&b'-') && is_readonly(&buf) {
                    demoted.store(true, Ordering::Relaxed);
                }
                match decode(&mut buf, resp3, inspect) {
                    Ok(Some(r)) => {
                        p.got.push(r);
                        if p.got.len() == p.inspect.len() {
                            if let Some(p) = queue.pop_front() {
                                if let Some(reply) = p.reply {
                                    let _ = reply.send(p.got);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Some(e),
                }
            }
            if queue.is_empty() && !buf.is_empty() {
                return Some("unexpected data from server".into());
            }
            if demoted.load(Ordering::Relaxed) && queue.is_empty() {
                // Jobs the writer handed over before it stopped come first.
                match prx.try_recv() {
                    Ok(p) => {
                        queue.push_back(p);
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let waiting = !queue.is_empty();
            tokio::select! {
                biased;
                p = prx.recv() => match p {
                    Some(p) => {
                        if queue.is_empty() {
                            progress = Instant::now();
                        }
                        queue.push_back(p);
                    }
                    None => return None,
                },
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => {
                        closed_idle = queue.is_empty() && buf.is_empty();
                        return Some("connection closed by server".into());
                    }
                    Ok(_) => progress = Instant::now(),
                    Err(e) => return Some(io_reason(&e)),
                },
                _ = &mut watchdog, if waiting => {
                    let now = Instant::now();
                    if now >= progress + limit {
                        return Some(late(limit));
                    }
                    // Callers past their deadline hear so now; their
                    // replies are dropped when they come.
                    for p in queue.iter_mut().take_while(|p| p.deadline <= now) {
                        p.answer(name, &late(limit));
                    }
                    let next = queue
                        .iter()
                        .find(|p| p.reply.is_some())
                        .map_or(progress + limit, |p| p.deadline.min(progress + limit));
                    watchdog.as_mut().reset(next);
                }
            }
        }
    };

    let reason = tokio::select! {
        r = writer => r,
        r = reader => r,
    };
    backlog.extend(jobs.drain(..).chain(arrived.drain(..)));
    let Some(reason) = reason else {
        return if demoted.load(Ordering::Relaxed) {
            Ended::Demoted
        } else {
            Ended::Dropped
        };
    };
    while let Ok(p) = prx.try_recv() {
        queue.push_back(p);
    }
    if queue.is_empty() && closed_idle {
        return Ended::Closed;
    }
    for mut p in queue.drain(..) {
        p.answer(name, &reason);
    }
    Ended::Failed(reason)
}

//! Shard leases for several nodes on one PostgreSQL store: a row per shard
//! in `shard_lease` with its holder, an expiry judged by the database's
//! clock alone, and an epoch, the fencing token. Taking a shard bumps its
//! epoch; every commit of a holder names the epochs it holds
//! ([`crate::Store::commit_fenced`]) and is refused once one has moved on,
//! so a node that lost a lease (paused, partitioned, slow) writes nothing,
//! whatever its own clock says. Expiry decides only when another node may
//! take over, never whether a write is safe.
//!
//! `Leases` keeps its own connection, so that renewing never waits behind
//! a group commit.

use std::fmt;
use std::time::Duration;

use crate::{PostgresStore, Result, SHARDS, StoreError};

/// A commit refused because its shard's epoch moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced {
    pub shard: u32,
    /// The epoch the committing node held.
    pub held: i64,
    /// The epoch in the store now.
    pub current: i64,
}

impl fmt::Display for Fenced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} was taken over (epoch {} held, {} now): nothing of this commit was written", self.shard, self.held, self.current)
    }
}

/// One shard's lease as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard: u32,
    /// The node that took it last (kept after it expired or was released).
    pub owner: Option<String>,
    pub epoch: i64,
    /// Milliseconds left by the database's clock; 0 or less: free to take.
    pub remaining_ms: i64,
}

/// What [`Leases::audit`] found among the fenced commits still kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    pub commits: i64,
    /// Commits made under an epoch of a shard that had not been granted
    /// before them, or after a later epoch had been: none, if fencing works.
    pub stale: i64,
}

/// The shard leases of one node.
pub struct Leases {
    store: PostgresStore,
    node: String,
    url: String,
}

fn millis(ttl: Duration) -> f64 {
    ttl.as_secs_f64() * 1000.0
}

impl Leases {
    /// Connects as `node` (its `cluster.node_id`) to the store at `url`,
    /// bringing the schema up to date.
    pub fn open(url: &str, node: &str) -> Result<Leases> {
        if node.is_empty() || node.len() > 64 {
            return Err(StoreError(format!("node id {node:?}: use 1 to 64 characters")));
        }
        Ok(Leases { store: Leases::connect(url)?, node: node.to_string(), url: url.to_string() })
    }

    /// A connection whose statements give up rather than wait without end
    /// (behind a lock a stalled node holds, or a store that stopped
    /// answering): the lease manager must keep renewing.
    fn connect(url: &str) -> Result<PostgresStore> {
        let mut store = PostgresStore::open(url)?;
        store.set_up("SET lock_timeout = 1000; SET statement_timeout = 5000")?;
        Ok(store)
    }

    /// Connects again (after the store restarted or the connection broke).
    pub fn reconnect(&mut self) -> Result<()> {
        self.store = Leases::connect(&self.url)?;
        Ok(())
    }

    /// Takes `shard` for `ttl` if it is free (expired or released) or this
    /// node's already, and answers its new epoch; `None` while another
    /// node holds it. Taking it again bumps the epoch too, so that a
    /// restarted node fences what its previous run may still send. The row
    /// is locked `FOR UPDATE` first: a plain `UPDATE` of a non-key column
    /// would not wait for the commits under way (`FOR KEY SHARE`).
    ///
    /// When the row stays locked past `lock_timeout`, a stalled node may
    /// hold it: one paused (SIGSTOP, a VM stall) in the middle of a commit's
    /// statement, whose transaction PostgreSQL sees as active, waiting for
    /// its client, and so neither idle (`idle_in_transaction_session_timeout`)
    /// nor cancellable (`statement_timeout` is not acted on while a backend
    /// waits for its client). Such sessions of this store, active and
    /// waiting for their client for longer than `ttl`, are ended
    /// ([`Leases::end_stalled`]); the next try finds the row free.
    pub fn acquire(&mut self, shard: u32, ttl: Duration) -> Result<Option<i64>> {
        check(shard)?;
        let row = self
            .store
            .conn()?
            .query_opt(
                "WITH locked AS (SELECT shard_no FROM shard_lease WHERE shard_no = $3 FOR UPDATE), \
                 granted AS (UPDATE shard_lease l SET owner = $1, epoch = epoch + 1, expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
                 FROM locked WHERE l.shard_no = locked.shard_no AND (l.expires_at < clock_timestamp() OR l.owner = $1) RETURNING l.shard_no, l.epoch, l.owner) \
                 INSERT INTO lease_grants (shard_no, epoch, owner) SELECT * FROM granted RETURNING epoch",
                &[&self.node, &millis(ttl), &(shard as i32)],
            );
        match row {
            Ok(row) => Ok(row.map(|row| row.get(0))),
            Err(error) if error.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                let ended = self.end_stalled(ttl).map_or_else(|e| format!("; looking for stalled sessions failed: {e}"), |n| format!("; {n} stalled session(s) of this store ended"));
                Err(StoreError(format!("{}{ended}", crate::postgres::db(error))))
            }
            Err(error) => Err(crate::postgres::db(error)),
        }
    }

    /// Ends the sessions of this store (its `application_name`) that have
    /// been in the middle of a statement, waiting for their client, for
    /// longer than `ttl`: a client sends a statement's data in one go, so
    /// such a client has stalled, and its transaction holds locks that would
    /// hold up takeovers for as long as the stall lasts. Answers how many.
    /// (Needs the right to end them: the nodes connect as one role.)
    pub fn end_stalled(&mut self, ttl: Duration) -> Result<u64> {
        let row = self
            .store
            .conn()?
            .query_one(
                "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
                 WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid() \
                 AND state = 'active' AND wait_event = 'ClientRead' AND xact_start IS NOT NULL \
                 AND state_change < clock_timestamp() - $1 * interval '1 millisecond'",
                &[&millis(ttl)],
            )
            .map_err(crate::postgres::db)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Extends the leases this node holds at the given epochs by `ttl`, in
    /// one statement; answers the shards it no longer holds.
    pub fn renew(&mut self, held: &[(u32, i64)], ttl: Duration) -> Result<Vec<u32>> {
        let shards: Vec<i32> = held.iter().map(|&(shard, _)| shard as i32).collect();
        let epochs: Vec<i64> = held.iter().map(|&(_, epoch)| epoch).collect();
        let rows = self
            .store
            .conn()?
            .query(
                "UPDATE shard_lease l SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' \
                 FROM UNNEST($1::int4[], $2::int8[]) AS h(shard_no, epoch) \
                 WHERE l.shard_no = h.shard_no AND l.epoch = h.epoch AND l.owner = $4 RETURNING l.shard_no",
                &[&shards, &epochs, &millis(ttl), &self.node],
            )
            .map_err(crate::postgres::db)?;
        let kept: Vec<u32> = rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect();
        Ok(held.iter().map(|&(shard, _)| shard).filter(|shard| !kept.contains(shard)).collect())
    }

    /// Gives `shard` up at once (a graceful stop or a rebalance), if this
    /// node still holds it at `epoch`; the next node to take it bumps the
    /// epoch. Answers whether it was held.
    pub fn release(&mut self, shard: u32, epoch: i64) -> Result<bool> {
        check(shard)?;
        let n = self
            .store
            .conn()?
            .execute("UPDATE shard_lease SET expires_at = '-infinity' WHERE shard_no = $1 AND epoch = $2 AND owner = $3", &[&(shard as i32), &epoch, &self.node])
            .map_err(crate::postgres::db)?;
        Ok(n == 1)
    }

    /// Says this node is alive for `ttl` more (by the database's clock),
    /// joining the cluster's nodes if it was not among them.
    pub fn heartbeat(&mut self, ttl: Duration) -> Result<()> {
        self.store
            .conn()?
            .execute(
                "INSERT INTO cluster_node (node, seen_until) VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond') \
                 ON CONFLICT (node) DO UPDATE SET seen_until = excluded.seen_until",
                &[&self.node, &millis(ttl)],
            )
            .map_err(crate::postgres::db)?;
        Ok(())
    }

    /// The nodes whose last heartbeat has not run out, by id.
    pub fn live_nodes(&mut self) -> Result<Vec<String>> {
        let rows = self.store.conn()?.query("SELECT node FROM cluster_node WHERE seen_until > clock_timestamp() ORDER BY node", &[]).map_err(crate::postgres::db)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Leaves the cluster at once (a graceful stop): the others stop
    /// counting this node when they share the shards out.
    pub fn leave(&mut self) -> Result<()> {
        self.store.conn()?.execute("DELETE FROM cluster_node WHERE node = $1", &[&self.node]).map_err(crate::postgres::db)?;
        Ok(())
    }

    /// Checks every fenced commit still kept against the epochs granted
    /// (`lease_grants`; both are numbered from one sequence, each number
    /// taken while the lease row is locked).
    pub fn audit(&mut self) -> Result<Audit> {
        let row = self
            .store
            .conn()?
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE stale) FROM (SELECT c.seq, bool_or( \
                   NOT EXISTS (SELECT 1 FROM lease_grants g WHERE g.shard_no = f.shard AND g.epoch = f.epoch AND g.seq < c.seq) \
                   OR EXISTS (SELECT 1 FROM lease_grants g WHERE g.shard_no = f.shard AND g.epoch > f.epoch AND g.seq < c.seq)) AS stale \
                 FROM fenced_commits c, unnest(c.shards, c.epochs) AS f(shard, epoch) GROUP BY c.seq) AS per_commit",
                &[],
            )
            .map_err(crate::postgres::db)?;
        Ok(Audit { commits: row.get(0), stale: row.get(1) })
    }

    /// Forgets the fenced commits older than `keep` (by the database's
    /// clock); answers how many. The grants are kept: a row per takeover.
    pub fn prune_audit(&mut self, keep: Duration) -> Result<u64> {
        self.store
            .conn()?
            .execute("DELETE FROM fenced_commits WHERE committed_at < clock_timestamp() - $1 * interval '1 millisecond'", &[&millis(keep)])
            .map_err(crate::postgres::db)
    }

    /// Every shard's lease, by shard.
    pub fn all(&mut self) -> Result<Vec<Lease>> {
        let rows = self
            .store
            .conn()?
            .query(
                "SELECT shard_no, owner, epoch, CASE WHEN expires_at = '-infinity' THEN -1 \
                 ELSE GREATEST(-1, CEIL(EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000))::int8 END \
                 FROM shard_lease ORDER BY shard_no",
                &[],
            )
            .map_err(crate::postgres::db)?;
        Ok(rows.iter().map(|row| Lease { shard: row.get::<_, i32>(0) as u32, owner: row.get(1), epoch: row.get(2), remaining_ms: row.get(3) }).collect())
    }
}

fn check(shard: u32) -> Result<()> {
    if shard >= SHARDS {
        return Err(StoreError(format!("shard {shard}: shards are 0 to {}", SHARDS - 1)));
    }
    Ok(())
}

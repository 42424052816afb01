//! Waiting for the seed lab's outcomes: the gateway's listeners, the VM's entry Healthy, calls
//! that answer (or fail), the gateway's counters growing, DNS answers.

use super::probe::{Call, admin, call, dig, health_of, stat, workload_entries};
use super::{GATEWAY_LISTENERS, SeedLab};
use crate::error::Result;
use crate::host::Host;
use crate::mesh::ControlPlane;
use crate::process::Process;
use crate::wait::{Attempt, poll_until};
use std::time::Duration;

impl SeedLab {
    /// Waits for the gateway's three listeners; returns Envoy's `/listeners`.
    pub fn wait_gateway(&self, agent: &Process) -> Result<String> {
        poll_until("the gateway's listeners", Duration::from_secs(30), || {
            agent.ensure_running()?;
            let listeners = admin(&self.gw, "/listeners");
            Ok(if GATEWAY_LISTENERS.iter().all(|n| listeners.contains(n)) {
                Attempt::Ready(listeners)
            } else {
                Attempt::NotYet(listeners)
            })
        })
    }

    /// Waits until the VM's entry is registered and Healthy; returns the
    /// `weftctl get workloadentries -n forum-services` table.
    pub fn wait_forum_healthy(&self, cp: &ControlPlane, agent: &Process) -> Result<String> {
        let entry = self.forum_entry();
        poll_until(
            "the VM registered through the gateway and Healthy=True",
            Duration::from_secs(40),
            || {
                agent.ensure_running()?;
                let table = workload_entries(cp);
                Ok(if health_of(&table, &entry).as_deref() == Some("True") {
                    Attempt::Ready(table)
                } else {
                    Attempt::NotYet(table)
                })
            },
        )
    }

    /// Repeats `curl ARGS` from `from` until it answers 200 (or `timeout`), with `agents` still
    /// running; returns that call.
    pub fn wait_call(
        &self,
        from: &Host,
        args: &[&str],
        timeout: Duration,
        agents: &[&Process],
    ) -> Result<Call> {
        poll_until(
            &format!("{} to answer 200 from {}", args.join(" "), from.name()),
            timeout,
            || {
                for a in agents {
                    a.ensure_running()?;
                }
                let c = call(from, args);
                Ok(if c.ok() {
                    Attempt::Ready(c)
                } else {
                    Attempt::NotYet(c.output)
                })
            },
        )
    }

    /// Repeats `curl ARGS` from `from` until it gets no answer at all (or `timeout`); returns
    /// that call.
    pub fn wait_call_fails(&self, from: &Host, args: &[&str], timeout: Duration) -> Result<Call> {
        poll_until(
            &format!("{} to fail from {}", args.join(" "), from.name()),
            timeout,
            || {
                let c = call(from, args);
                Ok(if c.status == 0 {
                    Attempt::Ready(c)
                } else {
                    Attempt::NotYet(c.output)
                })
            },
        )
    }

    /// Waits until the gateway's counter `<cluster>.<counter>` exceeds its `before` value for
    /// each `(cluster, before)`; returns the new values.
    pub fn wait_stat_above(
        &self,
        before: &[(&str, u64)],
        counter: &str,
        timeout: Duration,
    ) -> Result<Vec<u64>> {
        poll_until(&format!("the gateway's {counter} to grow"), timeout, || {
            let now: Vec<u64> = before
                .iter()
                .map(|(c, _)| stat(&self.gw, &format!("{c}.{counter}")))
                .collect();
            Ok(if now.iter().zip(before).all(|(n, (_, b))| n > b) {
                Attempt::Ready(now)
            } else {
                Attempt::NotYet(format!("{before:?} -> {now:?}"))
            })
        })
    }

    /// Repeats `dig +time=1 +tries=1 +short @localhost -p 15053 NAME` in `host` until it answers
    /// `want`, then returns `dig +short @localhost -p 15053 NAME` as a user types it.
    pub fn wait_dig(&self, host: &Host, name: &str, want: &str, timeout: Duration) -> Result<Call> {
        poll_until(
            &format!(
                "the DNS proxy in {} to answer {name} with {want}",
                host.name()
            ),
            timeout,
            || {
                let c = dig(
                    host,
                    &[
                        "+time=1",
                        "+tries=1",
                        "+short",
                        "@localhost",
                        "-p",
                        "15053",
                        name,
                    ],
                );
                Ok(if c.output.trim() == want {
                    Attempt::Ready(())
                } else {
                    Attempt::NotYet(c.output)
                })
            },
        )?;
        Ok(dig(host, &["+short", "@localhost", "-p", "15053", name]))
    }
}

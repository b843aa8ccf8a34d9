/**
 * Prometheus metrics of the gateway, read from each stage's counters at scrape time, so the
 * numbers in /metrics, /status and the logs are the same numbers.
 */
import { readFile } from 'node:fs/promises';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Gateway } from './gateway.js';

function mirrorCounter(reg: Registry, name: string, help: string, labelNames: string[], read: () => Array<[Record<string, string>, number]>): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [reg],
    collect() {
      this.reset();
      // Zeros are exported too: a series that exists from the start makes rate() and alerts work.
      for (const [labels, v] of read()) this.inc(labels, v);
    },
  });
}

function gauge(reg: Registry, name: string, help: string, read: () => number | Promise<number>): void {
  new Gauge({
    name,
    help,
    registers: [reg],
    async collect() {
      this.set(await read());
    },
  });
}

/**
 * Durations of the raw log's group writes (LevelDB write, with its fsync under `sync: always`):
 * every QoS 1 PUBACK waits for one. Made with the gateway, so it counts from the first commit,
 * and registered with /metrics by gatewayMetrics.
 */
export function commitWriteHistogram(): Histogram {
  return new Histogram({
    name: 'sluice_gateway_commit_write_seconds',
    help: 'Duration of each group write of the durable log (LevelDB write and, under sync: always, its fsync); QoS 1 PUBACKs wait for it',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [],
  });
}

export function gatewayMetrics(gw: Gateway): Registry {
  const reg = new Registry();
  // Process figures (RSS, heap, event-loop lag, open handles) next to the gateway's own.
  collectDefaultMetrics({ register: reg });
  const s = () => gw.snapshotStats();
  mirrorCounter(reg, 'sluice_gateway_received_total', 'Telemetry publishes received', [], () => [[{}, s().ingest.received]]);
  mirrorCounter(reg, 'sluice_gateway_committed_total', 'Readings committed to the durable log', [], () => [[{}, s().ingest.committed]]);
  mirrorCounter(reg, 'sluice_gateway_dropped_total', 'Readings or records dropped, by reason', ['reason'], () => {
    const st = s();
    // Publishes refused by the broker (ACL, rate, limits) count here too, under their own reasons.
    const byReason: Record<string, number> = { ...st.ingest.dropped };
    for (const [reason, v] of Object.entries(st.broker.dropped)) byReason[reason] = (byReason[reason] ?? 0) + v;
    const out: Array<[Record<string, string>, number]> = Object.entries(byReason).map(([reason, v]) => [{ reason }, v]);
    out.push([{ reason: 'evicted_quota' }, st.log.evicted]);
    out.push([{ reason: 'quarantined' }, st.log.quarantined]);
    return out;
  });
  mirrorCounter(reg, 'sluice_gateway_refused_total', 'MQTT connections and subscriptions refused, by reason (bad_password, identifier_rejected, subscribe_denied, …)', ['reason'], () =>
    Object.entries(s().broker.refused).map(([reason, v]) => [{ reason }, v]),
  );
  mirrorCounter(reg, 'sluice_gateway_salvaged_total', 'Readings copied from a damaged log into a fresh one at start', [], () => [[{}, s().log.salvaged]]);
  mirrorCounter(reg, 'sluice_gateway_damaged_blocks_total', 'LevelDB table blocks found damaged at start and marked so that LevelDB reports them', [], () => [[{}, s().log.damagedBlocks]]);
  mirrorCounter(reg, 'sluice_gateway_log_repairs_total', 'Times the log metadata (MANIFEST) was damaged at start and rebuilt by LevelDB repair', [], () => [[{}, s().log.repairs]]);
  mirrorCounter(reg, 'sluice_gateway_lost_to_corruption_total', 'Unacknowledged readings of a damaged log that could not be read back', [], () => [[{}, s().log.lostToCorruption]]);
  mirrorCounter(reg, 'sluice_gateway_wal_bytes_dropped_total', "Bytes of LevelDB's write-ahead log found damaged at start and skipped by LevelDB", [], () => [[{}, s().log.walBytesDropped]]);
  mirrorCounter(reg, 'sluice_gateway_quarantined_total', 'Log records quarantined (corrupt or refused by the cloud)', [], () => [[{}, s().log.quarantined]]);
  mirrorCounter(reg, 'sluice_gateway_group_commits_total', 'LevelDB group commits', [], () => [[{}, s().log.groupCommits]]);
  reg.registerMetric(gw.commitWrites);
  mirrorCounter(reg, 'sluice_gateway_slow_commit_writes_total', 'Group writes of the log that took log.slowWrite (default 1 s) or longer', [], () => [[{}, s().log.slowWrites]]);
  mirrorCounter(reg, 'sluice_gateway_forwarded_total', 'Records forwarded and acknowledged by the cloud', [], () => [[{}, s().forwarder.recordsForwarded]]);
  mirrorCounter(reg, 'sluice_gateway_acked_total', 'Records acknowledged by the cloud and removed from the log', [], () => [[{}, s().log.acked]]);
  mirrorCounter(reg, 'sluice_gateway_batches_total', 'Batches sent to the cloud', [], () => [[{}, s().forwarder.batchesSent]]);
  mirrorCounter(reg, 'sluice_gateway_retries_total', 'Batch retries', [], () => [[{}, s().forwarder.retries]]);
  mirrorCounter(reg, 'sluice_gateway_errors_total', 'Errors by stage and reason', ['stage', 'reason'], () => {
    const st = s();
    const out: Array<[Record<string, string>, number]> = Object.entries(st.forwarder.errors).map(([reason, v]) => [{ stage: 'forwarder', reason }, v]);
    out.push([{ stage: 'log', reason: 'commit' }, st.log.commitErrors]);
    out.push([{ stage: 'ingest', reason: 'commit' }, st.ingest.errors]);
    out.push([{ stage: 'broker', reason: 'client' }, st.broker.clientErrors]);
    return out;
  });
  gauge(reg, 'sluice_gateway_backlog_records', 'Records in the log not yet acknowledged by the cloud', () => s().log.backlogRecords);
  gauge(reg, 'sluice_gateway_backlog_bytes', 'Bytes of records in the log not yet acknowledged', () => s().log.backlogBytes);
  gauge(reg, 'sluice_gateway_oldest_unacked_age_seconds', 'Age (event time) of the oldest unacknowledged record', async () => {
    const ts = await gw.log.oldestUnackedTs();
    return ts === undefined ? 0 : Math.max(0, (Date.now() - ts) / 1000);
  });
  gauge(reg, 'sluice_gateway_connected_clients', 'Connected MQTT clients', () => s().broker.connected);
  gauge(reg, 'sluice_gateway_pending_commits', 'Publishes waiting for their group commit', () => s().broker.pendingCommits);
  gauge(reg, 'sluice_gateway_circuit_open', '1 while the circuit breaker to the cloud is open', () => (s().forwarder.circuit === 'open' ? 1 : 0));
  gauge(reg, 'sluice_gateway_last_seq', 'Last sequence number assigned', () => s().log.nextSeq - 1);
  gauge(reg, 'sluice_gateway_acked_seq', 'Highest sequence acknowledged by the cloud', () => s().log.cursor);
  gauge(reg, 'sluice_gateway_process_write_bytes', 'Bytes this process caused to be written to storage (/proc/self/io write_bytes; SD card wear)', processWriteBytes);
  gauge(reg, 'sluice_gateway_clock_synced', '1 once the wall clock is known to be synchronised (gateway/clock.ts)', () => (gw.clock.stats.synced ? 1 : 0));
  mirrorCounter(reg, 'sluice_gateway_clock_unsynced_total', 'Readings stamped by the gateway while its clock was not synchronised', [], () => [[{}, gw.clock.stats.unsyncedStamps]]);
  mirrorCounter(reg, 'sluice_gateway_clock_restamped_total', 'Unsynchronised stamps corrected before forwarding', [], () => [[{}, gw.clock.stats.restamped]]);
  return reg;
}

/** write_bytes of /proc/self/io (all threads, LevelDB's included); 0 where the kernel does not provide it. */
export async function processWriteBytes(): Promise<number> {
  const text = await readFile('/proc/self/io', 'utf8').catch(() => '');
  const m = /^write_bytes:\s*(\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * The cloud's Prometheus metrics, in a Registry of their own (never prom-client's global one, so two
 * CloudServers in one process, as in tests, do not collide).
 *
 *   sluice_cloud_batches_total{result}              every POST /api/v1/batches, by outcome
 *   sluice_cloud_points_written_total{measurement}  points InfluxDB accepted
 *   sluice_cloud_replayed_records_total             records/aggregates skipped as already written
 *   sluice_cloud_errors_total{reason}               errors, by reason
 *   sluice_cloud_influx_write_seconds               duration of each sink write (success or not)
 *   sluice_cloud_alert_transitions_total{rule,state} alert state changes committed
 *   sluice_cloud_alert_late_readings_total          readings older than their alert key's newest (skipped)
 *   sluice_cloud_alerts{state}                      keys currently pending / firing
 *   sluice_cloud_notifications_sent_total{target}   notifications (and history points) delivered
 *   sluice_cloud_notification_failures_total{target} failed delivery attempts (each is retried)
 *   sluice_cloud_notifications_dropped_total{target,reason} notifications given up, by reason
 *   sluice_cloud_outbox_pending                     entries waiting in the durable outbox
 *   sluice_cloud_rules_reloads_total{result}        rules file loads: ok, unchanged, error
 *   sluice_cloud_sse_clients                        open /api/v1/events streams
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type BatchResult =
  | 'ok'
  | 'replay'
  | 'gap'
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'too_large'
  | 'unavailable'
  | 'rejected'
  | 'internal';

export class CloudMetrics {
  readonly registry = new Registry();
  readonly batches = new Counter({ name: 'sluice_cloud_batches_total', help: 'Batches received, by result', labelNames: ['result'] as const, registers: [this.registry] });
  readonly pointsWritten = new Counter({
    name: 'sluice_cloud_points_written_total',
    help: 'Points accepted by InfluxDB, by measurement',
    labelNames: ['measurement'] as const,
    registers: [this.registry],
  });
  readonly replayed = new Counter({
    name: 'sluice_cloud_replayed_records_total',
    help: 'Records and aggregates received again after they were written (skipped)',
    registers: [this.registry],
  });
  readonly errors = new Counter({ name: 'sluice_cloud_errors_total', help: 'Errors, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly influxWrite = new Histogram({
    name: 'sluice_cloud_influx_write_seconds',
    help: 'Duration of InfluxDB writes',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly alertTransitions = new Counter({
    name: 'sluice_cloud_alert_transitions_total',
    help: 'Alert state transitions committed, by rule and new state',
    labelNames: ['rule', 'state'] as const,
    registers: [this.registry],
  });
  readonly alertLate = new Counter({ name: 'sluice_cloud_alert_late_readings_total', help: 'Readings older than the newest evaluated for their alert key (skipped)', registers: [this.registry] });
  readonly notificationsSent = new Counter({ name: 'sluice_cloud_notifications_sent_total', help: 'Notifications delivered, by target', labelNames: ['target'] as const, registers: [this.registry] });
  readonly notificationFailures = new Counter({
    name: 'sluice_cloud_notification_failures_total',
    help: 'Failed notification delivery attempts (retried), by target',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly notificationsDropped = new Counter({
    name: 'sluice_cloud_notifications_dropped_total',
    help: 'Notifications given up, by target and reason',
    labelNames: ['target', 'reason'] as const,
    registers: [this.registry],
  });
  readonly rulesReloads = new Counter({ name: 'sluice_cloud_rules_reloads_total', help: 'Rules file loads, by result', labelNames: ['result'] as const, registers: [this.registry] });
  readonly sseClients = new Gauge({ name: 'sluice_cloud_sse_clients', help: 'Open /api/v1/events streams', registers: [this.registry] });
  private alertSource: (() => { pending: number; firing: number; outbox: number }) | undefined;
  readonly alerts: Gauge<'state'> = new Gauge({
    name: 'sluice_cloud_alerts',
    help: 'Alert keys currently pending or firing',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: (): void => {
      const s = this.alertSource?.();
      this.alerts.set({ state: 'pending' }, s?.pending ?? 0);
      this.alerts.set({ state: 'firing' }, s?.firing ?? 0);
    },
  });
  readonly outboxPending: Gauge = new Gauge({
    name: 'sluice_cloud_outbox_pending',
    help: 'Entries waiting in the durable notification outbox',
    registers: [this.registry],
    collect: (): void => this.outboxPending.set(this.alertSource?.().outbox ?? 0),
  });

  constructor() {
    // Process figures (RSS, heap, event-loop lag, open handles) next to the cloud's own.
    collectDefaultMetrics({ register: this.registry });
  }

  /** Where the alert gauges read their values when scraped. */
  setAlertSource(fn: () => { pending: number; firing: number; outbox: number }): void {
    this.alertSource = fn;
  }

  batch(result: BatchResult): void {
    this.batches.inc({ result });
  }

  error(reason: string): void {
    this.errors.inc({ reason });
  }
}

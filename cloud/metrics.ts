/**
 * The cloud's Prometheus metrics, in a Registry of their own (never prom-client's global one, so two
 * CloudServers in one process, as in tests, do not collide).
 *
 *   sluice_cloud_batches_total{result}              every POST /api/v1/batches, by outcome
 *   sluice_cloud_points_written_total{measurement}  points InfluxDB accepted
 *   sluice_cloud_replayed_records_total             records/aggregates skipped as already written
 *   sluice_cloud_errors_total{reason}               errors, by reason
 *   sluice_cloud_influx_write_seconds               duration of each sink write (success or not)
 */
import { Counter, Histogram, Registry } from 'prom-client';

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

  batch(result: BatchResult): void {
    this.batches.inc({ result });
  }

  error(reason: string): void {
    this.errors.inc({ reason });
  }
}

/**
 * Topic access control for authenticated MQTT clients.
 *
 * Rules are MQTT topic filters (`+` one level, `#` the rest). For one client:
 * - PUBLISH to topic T is allowed iff T matches an allow.publish filter and no deny.publish filter.
 * - SUBSCRIBE to filter F is allowed iff every topic F can match is matched by one allow.subscribe
 *   filter ("F is covered") and F is not covered by a deny.subscribe filter. A subscription that only
 *   partly overlaps a deny filter is granted, and the denied topics are withheld at delivery
 *   (`canReceive`), so `devices/#` minus `devices/vault/#` works as expected.
 * - A device's publish scope is fixed to `devices/{its id}/#`; the registry cannot widen it.
 * - Wildcards never match topics starting with `$` at the first level [MQTT-4.7.2-1].
 *
 * Pure functions over strings; no I/O, no state.
 */
import { DEVICE_ID_RE } from '../protocols/topic.js';

export interface AclRules {
  publish: string[];
  subscribe: string[];
  denyPublish: string[];
  denySubscribe: string[];
}

/** Does topic filter `filter` match the concrete topic `topic`? */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true; // also matches the parent level [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Is every topic matched by filter `inner` also matched by filter `outer`? */
export function filterCovers(outer: string, inner: string): boolean {
  if (inner.startsWith('$') !== outer.startsWith('$') && (outer.startsWith('+') || outer.startsWith('#'))) return false;
  const o = outer.split('/');
  const n = inner.split('/');
  for (let i = 0; i < o.length; i++) {
    if (o[i] === '#') return true;
    if (i >= n.length) return false;
    if (n[i] === '#') return false; // inner spans more levels than outer's single one
    if (o[i] === '+') continue;
    if (n[i] === '+' || n[i] !== o[i]) return false;
  }
  return o.length === n.length;
}

/** A syntactically valid MQTT topic filter (what the registry may contain). */
export function isValidFilter(f: string): boolean {
  if (f.length === 0 || f.length > 1024) return false;
  const levels = f.split('/');
  return levels.every((l, i) => (l.includes('#') ? l === '#' && i === levels.length - 1 : !l.includes('+') || l === '+'));
}

/** Substitute `{id}` in a rule; ids match [A-Za-z0-9_.-], so the result cannot gain wildcards. */
export function expandRule(rule: string, id: string): string {
  if (!DEVICE_ID_RE.test(id)) throw new Error(`bad id ${id.slice(0, 70)}`);
  return rule.split('{id}').join(id);
}

export class Acl {
  constructor(readonly rules: AclRules) {}

  /** No restrictions at all: anonymous clients when `allowAnonymous` is on. */
  static open(): Acl {
    return new Acl({ publish: ['#'], subscribe: ['#'], denyPublish: [], denySubscribe: [] });
  }

  canPublish(topic: string): boolean {
    return this.rules.publish.some((f) => topicMatches(f, topic)) && !this.rules.denyPublish.some((f) => topicMatches(f, topic));
  }

  canSubscribe(filter: string): boolean {
    return this.rules.subscribe.some((a) => filterCovers(a, filter)) && !this.rules.denySubscribe.some((d) => filterCovers(d, filter));
  }

  /** Delivery-time check for subscriptions that overlap a deny rule. */
  canReceive(topic: string): boolean {
    return this.rules.denySubscribe.length === 0 || !this.rules.denySubscribe.some((d) => topicMatches(d, topic));
  }
}

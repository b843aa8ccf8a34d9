import { startInfluxd, influxQuery } from '/work/main/deploy/influxd.ts';
const h = await startInfluxd();
try {
  await influxQuery(h.url, 'CREATE DATABASE t');
  const now = Date.now();
  const lines = [
    `telemetry,gateway=g1,device=a,room=r1 temperature=20,humidity=50,door_open=false ${(now-60000)*1e6}`,
    `telemetry,gateway=g1,device=a temperature=21 ${(now-30000)*1e6}`,
    `telemetry,gateway=g1,device=b,room=r2 humidity=40 ${(now-10000)*1e6}`,
  ];
  const r = await fetch(`${h.url}/write?db=t&precision=ns`, { method: 'POST', body: lines.join('\n') });
  console.log('write', r.status, await r.text());
  for (const q of [
    'SELECT *::field, "gateway"::tag FROM telemetry GROUP BY "device" ORDER BY time DESC LIMIT 1',
    'SELECT last(*) FROM telemetry WHERE time >= now() - 1d GROUP BY "device"',
    'SELECT "temperature" AS "v0", "humidity" AS "v1" FROM telemetry WHERE ("device" = \'a\' OR "device" = \'b\') GROUP BY "device" ORDER BY time ASC LIMIT 10',
    'SELECT mean("temperature") AS "v0", mean("humidity") AS "v1" FROM telemetry WHERE ("device" = \'a\' OR "device" = \'b\') AND time >= now() - 1h GROUP BY time(1m), "device" fill(none) ORDER BY time ASC LIMIT 10',
    'SELECT last("door_open") AS "v0" FROM telemetry WHERE time >= now() - 1h GROUP BY time(1m), "device" fill(none)',
    'SELECT * FROM alerts',
  ]) {
    console.log(q, JSON.stringify((await influxQuery(h.url, q, 't')).results[0]));
  }
} finally { await h.stop(); }

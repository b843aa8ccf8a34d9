import { startWebhookReceiver } from '../test/support/cloud-alerts.ts';
import { ScriptedDevice, startAlertStack } from '../test/support/cloud-stack.ts';
import { allPoints } from '../test/support/stack.ts';
const hook = await startWebhookReceiver();
const stack = await startAlertStack({ rules: `
rules:
  - id: hot
    metric: temperature
    devices: "e2e-hot-*"
    above: 30
    for: 2s
    clear: 28
    severity: critical
    notify: [ops]
notifiers:
  ops: { webhook: ${hook.url} }
` });
try {
  const device = await ScriptedDevice.connect(stack.mqttUrl, 'e2e-hot-1');
  const t0 = Date.now() - 60_000;
  for (const [i, v] of [25, 31, 32, 33, 27].entries()) await device.publish(t0 + i * 1000, { temperature: v });
  await device.close();
  await new Promise((r) => setTimeout(r, 3000));
  console.log(await (await fetch(`${stack.cloudUrl}/api/v1/rules`)).text());
  console.log(await (await fetch(`${stack.cloudUrl}/api/v1/alerts?state=all`)).text());
  console.log((await allPoints(stack, 'telemetry')).length, (await allPoints(stack, 'alerts')));
  console.log(hook.received.length);
  console.log(stack.cloud.output().slice(-3000));
} finally { await stack.stop(); await hook.close(); }

/**
 * The client side of the cloud's read API for the CLI (`sluice query`, `sluice alerts`): one GET with
 * the read token, and every failure turned into one clear line on stderr and exit code 1.
 */
/** One line on stderr naming the command, exit code 1. */
export function fail(command: string, message: string): never {
  process.stderr.write(`sluice ${command}: ${message}\n`);
  process.exit(1);
}

export async function getJson(command: string, cloud: string, path: string, params: Record<string, string | undefined>, token?: string): Promise<{ url: URL; body: any; text: string }> {
  const base = /^https?:\/\//.test(cloud) ? cloud : `http://${cloud}`;
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    return fail(command, `--cloud: "${cloud}" is not a URL`);
  }
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  const bearer = token ?? process.env.SLUICE_QUERY_TOKEN;
  let res: Response;
  try {
    res = await fetch(url, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {}, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return fail(command, `cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) fail(command, `HTTP ${res.status}${body?.code ? ` ${body.code}` : ''}: ${body?.error ?? text.trim().slice(0, 200)}`);
  return { url, body, text };
}

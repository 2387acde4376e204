// The Emulsion API as this page uses it: same origin, bearer token from the session.

export class ApiError extends Error {
  // retryAfter: the server's Retry-After in seconds, when it sent one (429, 503).
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Retry-After as seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3); null if absent.
function retryAfterOf(response) {
  const value = response.headers.get('Retry-After');
  if (value === null) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

export function tokenInSession() {
  return sessionStorage.getItem('emulsion-token');
}

export function keepToken(token) {
  sessionStorage.setItem('emulsion-token', token);
}

export function forgetToken() {
  sessionStorage.removeItem('emulsion-token');
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${tokenInSession()}`, ...extra };
}

async function errorOf(response) {
  if (response.status === 401) {
    return new ApiError(401, 'unauthorized', 'The API did not accept this token.');
  }
  let code = 'http_error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.code || code;
    message = body.detail || message;
  } catch {
    // not an RFC 9457 problem from the API: keep the status line
  }
  return new ApiError(response.status, code, message, retryAfterOf(response));
}

export async function request(method, path, { json, extraHeaders, signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      headers: headers(json ? { 'Content-Type': 'application/json', ...extraHeaders } : extraHeaders),
      body: json ? JSON.stringify(json) : undefined,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', 'Cannot reach the Emulsion API; check your connection.');
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

const RETRYABLE = new Set([0, 429, 502, 503, 504]);
// A server asking for a longer pause than this is waited for this long, then asked again.
const MAX_RETRY_AFTER_S = 60;
// How long one call keeps waiting out the token's own limits.
const THROTTLED_PATIENCE_MS = 30 * 60 * 1000;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The wait before asking again when the token's own limit (429 `rate_limited`: presigns
// or notifies per second, items in flight, open event streams) refused a call: its
// Retry-After, capped, plus up to a second of jitter; null for any other error.
export function throttledWaitMs(error) {
  if (!(error instanceof ApiError) || error.status !== 429 || error.code !== 'rate_limited') {
    return null;
  }
  const seconds = Math.min(error.retryAfter ?? 1, MAX_RETRY_AFTER_S);
  return seconds * 1000 + Math.random() * 1000;
}

// Transient failures are retried `attempts` times (Retry-After honoured, else exponential);
// the token's own limits are waited out without spending an attempt: the API did nothing
// and said when to come back, so a big upload under a tight limit goes slower and finishes.
export async function withRetries(call, attempts = 5) {
  const patience = Date.now() + THROTTLED_PATIENCE_MS;
  for (let attempt = 0; ; ) {
    try {
      return await call();
    } catch (error) {
      const throttled = throttledWaitMs(error);
      if (throttled !== null && Date.now() + throttled < patience) {
        await pause(throttled);
        continue;
      }
      attempt += 1;
      if (attempt >= attempts || !(error instanceof ApiError) || !RETRYABLE.has(error.status)) {
        throw error;
      }
      const told = error.retryAfter === null ? null : Math.min(error.retryAfter, MAX_RETRY_AFTER_S);
      await pause(told === null ? 500 * 2 ** (attempt - 1) : told * 1000 + Math.random() * 1000);
    }
  }
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
// Calls onEvent({event, data}) for each event until the stream ends.
export async function streamEvents(path, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', 'Cannot reach the Emulsion API; check your connection.');
  }
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent({ event, data: JSON.parse(data.join('\n')) });
    }
  }
}

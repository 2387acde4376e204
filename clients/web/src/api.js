// The Emulsion API as this page uses it: same origin, bearer token from the session.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
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
  return new ApiError(response.status, code, message);
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

export async function withRetries(call, attempts = 5) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts - 1 || !(error instanceof ApiError) || !RETRYABLE.has(error.status)) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
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

// What this tab's session sent, kept in localStorage so a reload carries on: files
// uploaded but not yet handed to an ingest, and the ingest batches (with their
// Idempotency-Key and, once answered, their jobs).

const PREFIX = 'emulsion-web-v1:';

export class Ledger {
  static open(collection) {
    const key = PREFIX + collection;
    let data;
    try {
      data = JSON.parse(localStorage.getItem(key)) || {};
    } catch {
      data = {};
    }
    return new Ledger(key, { uploads: data.uploads || [], batches: data.batches || [] });
  }

  constructor(key, data) {
    this.key = key;
    this.data = data;
  }

  save() {
    localStorage.setItem(this.key, JSON.stringify(this.data));
  }

  uploaded(uploadKey, asset, name) {
    if (this.data.uploads.some((u) => u.upload_key === uploadKey)) return;
    this.data.uploads.push({ upload_key: uploadKey, asset, name });
    this.save();
  }

  // Uploaded, in no batch yet; one per asset name (the API refuses a request naming an
  // asset twice; the later file of the same name waits for the next batch).
  unsent() {
    const batched = new Set(this.data.batches.flatMap((b) => b.items.map((i) => i.upload_key)));
    const seen = new Set();
    return this.data.uploads.filter((u) => {
      if (batched.has(u.upload_key) || seen.has(u.asset)) return false;
      seen.add(u.asset);
      return true;
    });
  }

  startBatch(key, items) {
    const existing = this.data.batches.find((b) => b.key === key);
    if (existing) return existing;
    const batch = { key, items, jobs: null };
    this.data.batches.push(batch);
    this.save();
    return batch;
  }

  accepted(key, jobs) {
    const batch = this.data.batches.find((b) => b.key === key);
    if (batch) batch.jobs = jobs;
    this.save();
  }

  batches() {
    return this.data.batches;
  }

  names() {
    return new Map(this.data.uploads.map((u) => [u.upload_key, u.name]));
  }

  clear() {
    localStorage.removeItem(this.key);
    this.data = { uploads: [], batches: [] };
  }
}

// The batch's Idempotency-Key: a hash of the collection and its staging keys (unique
// per upload), so the same batch always carries the same key.
export async function batchKey(collection, items) {
  const text = [collection, ...items.map((i) => i.upload_key).sort()].join('\n');
  if (globalThis.crypto && crypto.subtle) {
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
    return `emulsion-web-v1-${[...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
  // Not a secure context (plain http on another host): a 64-bit FNV-1a pair instead.
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < text.length; i += 1) {
    a = Math.imul(a ^ text.charCodeAt(i), 0x01000193) >>> 0;
    b = Math.imul(b ^ text.charCodeAt(i), 0x811c9dc5) >>> 0;
  }
  return `emulsion-web-v1-fnv-${a.toString(16)}${b.toString(16)}-${items.length}`;
}

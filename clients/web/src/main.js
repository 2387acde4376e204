// Emulsion's browser uploader. Uppy does the uploading (Dashboard: drop files or a
// folder, per-file progress, retry; AwsS3: presigned POST forms straight to the object
// store; Golden Retriever: a reload resumes). This file joins it to the API: forms are
// presigned in batches, finished uploads are handed to `POST /v1/ingests` in batches
// (processing overlaps uploading), and every job is followed over server-sent events.
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import AwsS3 from '@uppy/aws-s3';
import GoldenRetriever from '@uppy/golden-retriever';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';
import './style.css';
import {
  ApiError, forgetToken, keepToken, request, streamEvents, throttledWaitMs, tokenInSession,
  withRetries,
} from './api.js';
import { reasonInWords } from './reasons.js';
import { placeholderURL } from './thumbhash.js';
import { Ledger, batchKey } from './ledger.js';

const ACCEPTED_TYPES = [
  'image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif', 'image/heic', 'image/heif',
];
// Browsers that cannot show HEIC (Chrome and Firefox off Apple's systems) give an iPhone
// photo no type or a generic one: its extension names it then (the processor checks the
// bytes either way).
const TYPES_BY_EXTENSION = {
  heic: 'image/heic', heif: 'image/heif', hif: 'image/heif', avif: 'image/avif',
};
const ACCEPTED_EXTENSIONS = Object.keys(TYPES_BY_EXTENSION).map((extension) => `.${extension}`);
// Presigning is cheap; batches let the first uploads start at once (as the CLI).
const PRESIGN_BATCH = 200;
// Uploads per ingest request: small enough that processing starts while the rest upload.
const NOTIFY_BATCH = 20;
const NOTIFY_DELAY_MS = 1000;
// A form this close to expiring is signed again rather than used.
const FORM_MARGIN_MS = 60_000;
const COLLECTION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const RECONNECT_MS = 1000;

const $ = (id) => document.getElementById(id);
const state = {
  access: null,
  collection: null,
  ledger: null,
  jobs: new Map(), // name -> {total, succeeded, failed, finished, phase, element}
  shown: new Set(), // upload keys already in the grid or the failures list
  notifyTimer: null,
  notifying: Promise.resolve(),
  itemsInFlight: new Map(), // job -> {running, again}
  startedAt: null,
};

// -- signing in and choosing a collection --------------------------------------------

function show(section) {
  for (const id of ['sign-in', 'collection-step', 'upload-step']) {
    $(id).hidden = id !== section && !(section === 'upload-step' && id === 'collection-step');
  }
}

function describeAccess(access) {
  if (access.all_collections) return 'This token may upload to any collection.';
  const names = [...access.collections, ...access.prefixes.map((p) => `${p}\u2026`)];
  return `This token may upload to: ${names.join(', ')}.`;
}

function mayUse(access, collection) {
  return access.all_collections
    || access.collections.includes(collection)
    || access.prefixes.some((prefix) => collection.startsWith(prefix));
}

async function signIn(token) {
  keepToken(token);
  try {
    state.access = await withRetries(() => request('GET', '/v1/access'));
  } catch (error) {
    forgetToken();
    if (error.status === 401) {
      throw new Error('This token was not accepted. Check that you copied the whole token, with nothing added.');
    }
    throw error;
  }
  $('who').hidden = false;
  $('who').textContent = 'Signed in.';
  $('collection-help').textContent = describeAccess(state.access);
  $('collections').replaceChildren(...state.access.collections.map((name) => {
    const option = document.createElement('option');
    option.value = name;
    return option;
  }));
  show('collection-step');
}

function chooseCollection(collection) {
  if (!COLLECTION_RE.test(collection)) {
    throw new Error('A collection name is 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit.');
  }
  if (!mayUse(state.access, collection)) {
    throw new Error(`This token may not upload to the collection \u201c${collection}\u201d. ${describeAccess(state.access)}`);
  }
  sessionStorage.setItem('emulsion-collection', collection);
  state.collection = collection;
  state.ledger = Ledger.open(collection);
  $('chosen-collection').textContent = collection;
  $('collection').value = collection;
  show('upload-step');
  uppy.getPlugin('Dashboard').setOptions({ disabled: false });
  resumeLedger();
}

// -- Uppy ----------------------------------------------------------------------------

const uppy = new Uppy({
  id: 'emulsion',
  autoProceed: true,
  allowMultipleUploadBatches: true,
  restrictions: { allowedFileTypes: [...ACCEPTED_TYPES, ...ACCEPTED_EXTENSIONS] },
  // The API names the asset after this: the path inside a dropped folder, flattened
  // (as the CLI does), so a/IMG_1.jpg and b/IMG_1.jpg stay two assets.
  onBeforeFileAdded: (file) => ({ ...file, meta: { ...file.meta, uploadName: uploadName(file) } }),
});

function contentType(file) {
  if (ACCEPTED_TYPES.includes(file.type)) return file.type;
  const extension = (file.name || '').split('.').pop().toLowerCase();
  return TYPES_BY_EXTENSION[extension] || file.type;
}

function uploadName(file) {
  const relative = file.meta && file.meta.relativePath;
  if (!relative) return file.name;
  const parts = relative.split('/').filter(Boolean);
  // A dropped folder's own name is not part of the photo's name.
  return (parts.length > 1 ? parts.slice(1) : parts).join('-').replace(/\\/g, '-');
}

uppy.use(Dashboard, {
  inline: true,
  target: '#drop',
  height: 360,
  width: '100%',
  proudlyDisplayPoweredByUppy: false,
  fileManagerSelectionType: 'both',
  showProgressDetails: true,
  // Local previews cost a decode per photo; the grid below shows the real thumbnails.
  disableThumbnailGenerator: true,
  note: 'JPEG, PNG, WebP, GIF, AVIF or HEIC photos, or a whole folder of them.',
  disabled: true,
});

// The Dashboard's file list scrolls but cannot take focus, so a keyboard cannot scroll
// it (axe: scrollable-region-focusable). Preact re-renders it, so this keeps watching.
function keyboardScrollableFileList() {
  for (const list of document.querySelectorAll('#drop .uppy-Dashboard-files:not([tabindex])')) {
    list.tabIndex = 0;
    list.setAttribute('aria-label', 'Files to upload');
  }
}
new MutationObserver(keyboardScrollableFileList).observe($('drop'), { childList: true, subtree: true });

// Presign every file of an upload run in batches before any is sent; a restored file
// keeps its form (same staging key, so a resumed upload only replaces its own object)
// while it is valid and was made for the chosen collection: an upload is presigned for
// one collection, and only an ingest into that one accepts it.
function formStillGood(form, now) {
  return form && Date.parse(form.expires_at) - FORM_MARGIN_MS > now
    && form.key.startsWith(`staging/${state.collection}/`);
}

uppy.addPreProcessor(async (fileIDs) => {
  const now = Date.now();
  const todo = uppy.getFilesByIds(fileIDs).filter((file) => !file.progress.uploadComplete
    && !formStillGood(file.meta.form, now));
  for (let start = 0; start < todo.length; start += PRESIGN_BATCH) {
    const batch = todo.slice(start, start + PRESIGN_BATCH);
    const { uploads } = await withRetries(() => request('POST', '/v1/uploads', {
      json: {
        collection: state.collection,
        files: batch.map((file) => ({ filename: file.meta.uploadName, content_type: contentType(file), size: file.size })),
      },
    }));
    batch.forEach((file, index) => {
      const { key, asset, url, fields, expires_at } = uploads[index];
      uppy.setFileMeta(file.id, { form: { key, asset, url, fields, expires_at } });
    });
  }
});

uppy.use(AwsS3, {
  shouldUseMultipart: false,
  allowedMetaFields: false,
  limit: 6,
  generateObjectKey: (file) => file.meta.form.key,
  signRequest: ({ key }) => {
    const file = uppy.getFiles().find((f) => f.meta.form && f.meta.form.key === key);
    if (!file) throw new Error(`no presigned form for ${key}`);
    return { url: file.meta.form.url, fields: file.meta.form.fields };
  },
});

uppy.use(GoldenRetriever, { serviceWorker: false });

uppy.on('upload-success', (file) => {
  const { key, asset } = file.meta.form;
  state.ledger.uploaded(key, asset, file.meta.uploadName);
  scheduleNotify();
});
uppy.on('complete', () => scheduleNotify(0));
uppy.on('upload', () => { if (state.startedAt === null) state.startedAt = Date.now(); });
uppy.on('restored', () => {
  // The files of an interrupted upload are back: carry on without asking, once the
  // person is signed in again (the token lives in this tab's session).
  if (state.collection) confirmRestore();
  else state.restorePending = true;
});

// Uploads that were in flight when the page went away may have reached the store
// before their answer reached the page: ask the API which did, count those as done,
// and let Uppy send only the rest (each to its own key, as before the reload).
async function confirmRestore() {
  const waiting = uppy.getFiles().filter((f) => f.meta.form && !f.progress.uploadComplete);
  try {
    for (let start = 0; start < waiting.length; start += PRESIGN_BATCH) {
      const chunk = waiting.slice(start, start + PRESIGN_BATCH);
      const { present } = await withRetries(() => request('POST', '/v1/uploads/present', {
        json: { keys: chunk.map((f) => f.meta.form.key) },
      }));
      const stored = new Set(present);
      for (const file of chunk.filter((f) => stored.has(f.meta.form.key))) {
        uppy.emit('upload-success', uppy.getFile(file.id), {
          status: 200, body: { key: file.meta.form.key }, uploadURL: undefined,
        });
      }
    }
  } catch (error) {
    // Not knowing costs at most a second upload of the same file to the same key.
    $('collection-error').textContent = `Could not check earlier uploads: ${error.message}`;
  }
  uppy.emit('restore-confirmed');
}
uppy.on('state-update', () => renderUploadTotals());

function renderUploadTotals() {
  const files = uppy.getFiles();
  if (!files.length) return;
  const total = files.reduce((sum, f) => sum + (f.size || 0), 0);
  const sent = files.reduce((sum, f) => sum + (f.progress.uploadComplete ? f.size || 0 : f.progress.bytesUploaded || 0), 0);
  const done = files.filter((f) => f.progress.uploadComplete).length;
  const failed = files.filter((f) => f.error).length;
  const percent = total ? Math.round((sent / total) * 100) : 0;
  $('upload-progress').value = percent;
  const seconds = state.startedAt ? (Date.now() - state.startedAt) / 1000 : 0;
  const speed = seconds > 0.5 ? sent / seconds : 0;
  const left = speed > 0 && sent < total ? Math.ceil((total - sent) / speed) : 0;
  const parts = [`${done} of ${files.length} files uploaded (${percent} %)`,
    `${mb(sent)} of ${mb(total)}`];
  if (speed > 0 && sent < total) parts.push(`${mb(speed)}/s`, `about ${left} s left`);
  if (failed) parts.push(`${failed} failed (use Retry)`);
  $('upload-summary').textContent = parts.join(' \u00b7 ');
  $('upload-summary').dataset.percent = String(percent);
  $('upload-summary').dataset.uploaded = String(done);
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// -- notify: uploaded files become IngestJobs, a batch at a time ---------------------

function scheduleNotify(delay) {
  clearTimeout(state.notifyTimer);
  const waiting = state.ledger ? state.ledger.unsent().length : 0;
  if (!waiting) return;
  const now = waiting >= NOTIFY_BATCH || delay === 0;
  state.notifyTimer = setTimeout(() => {
    state.notifying = state.notifying.then(notifyWaiting).catch(showNotifyError);
  }, now ? 0 : NOTIFY_DELAY_MS);
}

async function notifyWaiting() {
  for (;;) {
    const items = state.ledger.unsent().slice(0, NOTIFY_BATCH);
    if (!items.length) return;
    const batch = state.ledger.startBatch(await batchKey(state.collection, items), items);
    await sendBatch(batch);
  }
}

async function sendBatch(batch) {
  const body = {
    collection: state.collection,
    items: batch.items.map(({ upload_key, asset }) => ({ upload_key, asset })),
  };
  // The same Idempotency-Key on every retry and after a reload: the API answers a
  // repeat with the jobs it already made.
  const accepted = await withRetries(() => request('POST', '/v1/ingests', {
    json: body, extraHeaders: { 'Idempotency-Key': batch.key },
  }));
  state.ledger.accepted(batch.key, accepted.jobs);
  accepted.jobs.forEach(follow);
  $('collection-error').textContent = '';
}

function showNotifyError(error) {
  const message = error.status === 403
    ? `This token may not upload to the collection \u201c${state.collection}\u201d.`
    : `Could not start processing: ${error.message}`;
  $('collection-error').textContent = message;
}

// After a reload: send what was uploaded but not sent, resend batches whose answer was
// lost (same key), and follow every job of this session again.
function resumeLedger() {
  for (const batch of state.ledger.batches()) {
    if (batch.jobs) batch.jobs.forEach(follow);
  }
  const unanswered = state.ledger.batches().filter((batch) => !batch.jobs);
  state.notifying = state.notifying
    .then(async () => { for (const batch of unanswered) await sendBatch(batch); })
    .then(notifyWaiting)
    .catch(showNotifyError);
  if (state.restorePending) {
    state.restorePending = false;
    confirmRestore();
  }
  renderJobs();
}

// -- following jobs ------------------------------------------------------------------

// Event streams the page keeps open at once: a token may hold 16 per API pod (its
// `watches` limit), and a large upload makes many jobs; they finish roughly in order, and
// a stream starts with the job's status, so the later ones lose nothing by waiting.
const MAX_FOLLOWS = 8;
let follows = 0;
const waitingToFollow = [];

async function followSlot() {
  if (follows < MAX_FOLLOWS) {
    follows += 1;
    return;
  }
  await new Promise((resolve) => waitingToFollow.push(resolve));
}

function releaseFollowSlot() {
  const next = waitingToFollow.shift();
  if (next) next();
  else follows -= 1;
}

function follow(name) {
  if (state.jobs.has(name)) return;
  const job = { name, total: 0, succeeded: 0, failed: 0, finished: false, phase: 'Pending' };
  state.jobs.set(name, job);
  renderJobs();
  (async () => {
    await followSlot();
    try {
      await followEvents(name, job);
    } finally {
      releaseFollowSlot();
    }
  })();
}

// A job's events until it has finished (reconnecting after a break, or as the API says).
async function followEvents(name, job) {
  let failures = 0;
  while (!job.finished) {
    try {
      await streamEvents(`/v1/ingests/${encodeURIComponent(name)}/events`, ({ event, data }) => {
        if (event === 'status' || event === 'end') {
          Object.assign(job, {
            total: data.total, succeeded: data.succeeded, failed: data.failed,
            finished: data.finished, phase: data.phase,
          });
          renderJobs();
          loadItems(name);
        } else if (event === 'deleted') {
          Object.assign(job, { finished: true, phase: 'Deleted' });
          renderJobs();
        }
      });
      failures = 0;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        Object.assign(job, { finished: true, phase: 'Gone' });
        renderJobs();
        return;
      }
      // The token's open streams at their limit: wait as the API said, not a failure.
      const throttled = throttledWaitMs(error);
      if (throttled !== null) {
        await new Promise((resolve) => setTimeout(resolve, throttled));
        continue;
      }
      failures += 1;
    }
    if (!job.finished) await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS * Math.min(failures + 1, 10)));
  }
}

// The items of a job (thumbnails, failures), fetched after each status change; one
// request per job at a time, repeated once if a change came in meanwhile.
function loadItems(name) {
  const flight = state.itemsInFlight.get(name) || { running: false, again: false };
  state.itemsInFlight.set(name, flight);
  if (flight.running) {
    flight.again = true;
    return;
  }
  flight.running = true;
  (async () => {
    do {
      flight.again = false;
      try {
        const status = await request('GET', `/v1/ingests/${encodeURIComponent(name)}?item_limit=2000`);
        showItems(status);
      } catch {
        // the next status event tries again
      }
    } while (flight.again);
    flight.running = false;
  })();
}

function showItems(status) {
  const names = state.ledger.names();
  const messages = new Map((status.failures || []).map((f) => [f.index, f.message]));
  for (const item of status.items) {
    if (state.shown.has(item.upload_key) || item.state === 'pending') continue;
    const fileName = names.get(item.upload_key) || item.asset;
    if (item.state === 'failed') {
      state.shown.add(item.upload_key);
      const li = document.createElement('li');
      li.dataset.asset = item.asset;
      li.dataset.reason = item.reason || '';
      const name = document.createElement('strong');
      name.textContent = fileName;
      const words = document.createElement('span');
      words.textContent = ` \u2014 ${reasonInWords(item.reason)}`;
      li.append(name, words);
      const detail = messages.get(item.index);
      if (detail) li.title = detail;
      $('failures').append(li);
      continue;
    }
    const thumb = (item.outputs || []).find((output) => output.style === 'thumb');
    if (!thumb) continue;
    state.shown.add(item.upload_key);
    const li = document.createElement('li');
    const figure = document.createElement('figure');
    const img = document.createElement('img');
    img.src = thumb.url;
    img.alt = fileName;
    img.width = thumb.width;
    img.height = thumb.height;
    img.dataset.asset = item.asset;
    img.loading = 'lazy';
    if (item.placeholder) {
      // Painted where the thumbnail will be until it arrives (covered by it then).
      img.style.backgroundColor = item.placeholder.dominant_color;
      const preview = placeholderURL(item.placeholder.thumbhash);
      if (preview) {
        img.style.backgroundImage = `url("${preview}")`;
        img.style.backgroundSize = 'cover';
      }
      img.dataset.placeholder = item.placeholder.dominant_color;
    }
    const caption = document.createElement('figcaption');
    caption.textContent = fileName;
    figure.append(img, caption);
    li.append(figure);
    $('thumbs').append(li);
  }
}

function renderJobs() {
  let total = 0;
  let done = 0;
  let failed = 0;
  const rows = [];
  for (const job of state.jobs.values()) {
    total += job.total;
    done += job.succeeded + job.failed;
    failed += job.failed;
    let li = job.element;
    if (!li) {
      li = document.createElement('li');
      li.dataset.job = job.name;
      const label = document.createElement('label');
      const bar = document.createElement('progress');
      bar.id = `job-${job.name}`;
      label.htmlFor = bar.id;
      li.append(label, bar);
      job.element = li;
    }
    const [label, bar] = li.children;
    label.textContent = `${job.name}: ${job.succeeded + job.failed} of ${job.total} processed`
      + `${job.failed ? `, ${job.failed} failed` : ''} (${job.phase})`;
    bar.max = Math.max(job.total, 1);
    bar.value = job.succeeded + job.failed;
    li.dataset.finished = String(job.finished);
    rows.push(li);
  }
  $('jobs').replaceChildren(...rows);
  const waiting = state.ledger ? state.ledger.unsent().length : 0;
  const expected = total + waiting;
  $('process-progress').max = Math.max(expected, 1);
  $('process-progress').value = done;
  const allDone = state.jobs.size > 0 && [...state.jobs.values()].every((job) => job.finished) && !waiting;
  $('process-summary').textContent = expected
    ? `${done} of ${expected} photos processed${failed ? `, ${failed} could not be` : ''}${allDone ? ' \u2014 all done.' : '.'}`
    : '';
  $('process-summary').dataset.done = String(done);
  $('process-summary').dataset.total = String(expected);
  $('process-summary').dataset.finished = String(allDone);
}

// -- the page ------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('sign-in-error').textContent = '';
  const token = $('token').value.trim();
  if (!token) {
    $('sign-in-error').textContent = 'Enter your API token.';
    return;
  }
  try {
    await signIn(token);
    $('token').value = '';
    $('collection').focus();
  } catch (error) {
    $('sign-in-error').textContent = error.message;
    $('token').focus();
  }
});

$('collection-form').addEventListener('submit', (event) => {
  event.preventDefault();
  $('collection-error').textContent = '';
  try {
    chooseCollection($('collection').value.trim());
  } catch (error) {
    $('collection-error').textContent = error.message;
    $('collection').focus();
  }
});

$('sign-out').addEventListener('click', () => {
  forgetToken();
  sessionStorage.removeItem('emulsion-collection');
  window.location.reload();
});

$('start-over').addEventListener('click', () => {
  uppy.cancelAll();
  state.ledger.clear();
  window.location.reload();
});

(async () => {
  if (!tokenInSession()) return;
  try {
    await signIn(tokenInSession());
    const collection = sessionStorage.getItem('emulsion-collection');
    if (collection) chooseCollection(collection);
  } catch (error) {
    $('sign-in-error').textContent = error.message;
    show('sign-in');
  }
})();

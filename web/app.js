// app.js - the upload page: a token, presigned PUTs with progress, the status polled until
// done or failed, the variants shown, and the caller's recent images. Plain DOM, no framework,
// no build step; every text from the API or a file name goes in through textContent.
'use strict';

(function () {
  // The API's origin: this page's own, or (a copy served elsewhere) <html data-api="...">.
  const API = (document.documentElement.dataset.api || '').replace(/\/+$/, '');
  const TOKEN_KEY = 'resizer.token';
  const POLL_MS = 1000;
  const POLL_MAX_MS = 5000;
  const POLL_GIVE_UP_MS = 15 * 60 * 1000;
  const TYPES = {
    jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp',
    gif: 'image/gif', tif: 'image/tiff', tiff: 'image/tiff', avif: 'image/avif',
    heic: 'image/heic', heif: 'image/heif',
  };
  const LABELS = {
    requesting: 'requesting an upload URL', uploading: 'uploading',
    pending: 'uploaded, waiting for its event', queued: 'queued', processing: 'processing',
    done: 'done', failed: 'failed', error: 'error',
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  class ApiError extends Error {
    constructor(code, message, requestId, status) {
      super(message);
      this.code = code;
      this.requestId = requestId || null;
      this.status = status || 0; // 0: no HTTP answer at all
    }

    // Worth asking again later: no answer, throttled, or the service briefly unavailable.
    get transient() {
      return this.status === 0 || this.status === 429 || this.status >= 502;
    }
  }

  function token() {
    return $('token').value.trim();
  }

  function bytes(n) {
    if (n === null || n === undefined) return '';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(2) + ' MB';
  }

  // One API call with the bearer token; resolves to the parsed body, rejects with ApiError
  // (the service's error code, or network_error when the browser gives no answer at all:
  // the service is down, or this page's origin is not in CORS_ALLOWED_ORIGINS).
  async function call(method, path, body) {
    const init = { method, headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError('network_error', 'no answer from the API (is it running, and does ' +
        'CORS_ALLOWED_ORIGINS list this page\'s origin?)');
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(err.code || 'http_' + resp.status, err.message || resp.statusText,
        err.request_id || resp.headers.get('X-Request-Id'), resp.status);
    }
    return data;
  }

  function contentType(file) {
    if (file.type) return file.type;
    const ext = (file.name.split('.').pop() || '').toLowerCase();
    return TYPES[ext] || 'application/octet-stream';
  }

  // The presigned PUT, with exactly the signed headers; progress from XHR's upload events.
  function put(upload, file, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', upload.url);
      for (const [name, value] of Object.entries(upload.headers || {})) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.addEventListener('progress', (ev) => {
        if (!ev.lengthComputable) return;
        progress.max = ev.total;
        progress.value = ev.loaded;
      });
      xhr.addEventListener('load', () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          progress.value = progress.max;
          resolve();
          return;
        }
        const code = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText || '');
        reject(new ApiError(code ? code[1] : 'upload_http_' + xhr.status,
          'S3 refused the upload (HTTP ' + xhr.status + ')'));
      });
      xhr.addEventListener('error', () => reject(new ApiError('upload_failed',
        'the upload to S3 did not get through (network, or no CORS rule on the bucket ' +
        'for this origin)')));
      xhr.send(file);
    });
  }

  // -- one upload ------------------------------------------------------------------------

  function newItem(file) {
    const li = $('upload-item').content.firstElementChild.cloneNode(true);
    const item = {
      li, file, id: null, state: null, shown: false, uploaded: false,
      progress: li.querySelector('progress'),
    };
    li.querySelector('.name').textContent = file.name;
    item.progress.setAttribute('aria-label', 'Upload progress of ' + file.name);
    li.querySelector('.retry').addEventListener('click', () => retry(item));
    $('uploads').prepend(li);
    return item;
  }

  function setState(item, state) {
    item.state = state;
    item.li.dataset.state = state;
    const out = item.li.querySelector('.state');
    out.dataset.state = state;
    out.textContent = LABELS[state] || state;
  }

  function showError(item, code, message) {
    const p = item.li.querySelector('.error');
    p.querySelector('.error-code').textContent = code;
    p.querySelector('.error-message').textContent = message || '';
    p.hidden = false;
  }

  function showVariants(item, rec) {
    if (item.shown) return;
    item.shown = true;
    const box = item.li.querySelector('.variants');
    for (const v of rec.variants) {
      const fig = document.createElement('figure');
      const img = document.createElement('img');
      img.dataset.variant = v.name;
      img.alt = v.name + ' variant of ' + (rec.source.filename || rec.source.key);
      img.width = v.width;
      img.height = v.height;
      img.src = v.url;
      const cap = document.createElement('figcaption');
      cap.textContent = v.name + ' · ' + v.width + '×' + v.height + ' · ' + bytes(v.bytes);
      cap.title = v.bytes + ' bytes';
      fig.append(img, cap);
      box.append(fig);
    }
  }

  function render(item, rec) {
    setState(item, rec.state);
    if (rec.state === 'failed' && rec.error) showError(item, rec.error.code, rec.error.message);
    if (rec.state === 'done') showVariants(item, rec);
  }

  // Polls until the image is done or failed. The interval grows from POLL_MS to POLL_MAX_MS,
  // so a page left open does not call every second; an answer that says "later" (no
  // answer, 429, 5xx) is waited out, since the image goes on being processed meanwhile.
  async function poll(item) {
    const deadline = Date.now() + POLL_GIVE_UP_MS;
    let wait = POLL_MS;
    for (;;) {
      let rec = null;
      try {
        rec = await call('GET', '/v1/images/' + item.id);
      } catch (e) {
        if (!(e instanceof ApiError) || !e.transient || Date.now() > deadline) throw e;
        showError(item, e.code, 'will ask again: ' + e.message);
      }
      if (rec) {
        item.li.querySelector('.error').hidden = true;
        render(item, rec);
        if (rec.state === 'done' || rec.state === 'failed') {
          refreshRecentIfFirst();
          return;
        }
        if (Date.now() > deadline) {
          showError(item, 'still_' + rec.state, 'stopped polling; see the recent images below');
          return;
        }
      }
      await sleep(wait);
      wait = Math.min(POLL_MAX_MS, Math.round(wait * 1.25));
    }
  }

  async function run(item, step) {
    item.li.querySelector('.error').hidden = true;
    try {
      await step();
    } catch (e) {
      setState(item, 'error');
      showError(item, e.code || 'error', e.message);
    }
  }

  function start(item) {
    return run(item, async () => {
      item.id = null;
      item.uploaded = false;
      item.progress.max = 100;
      item.progress.value = 0;
      setState(item, 'requesting');
      const up = await call('POST', '/v1/uploads', {
        filename: item.file.name, content_type: contentType(item.file), method: 'PUT',
      });
      item.id = up.id;
      item.li.dataset.id = up.id;
      item.li.dataset.key = up.key;
      setState(item, 'uploading');
      await put(up.upload, item.file, item.progress);
      item.uploaded = true;
      setState(item, 'pending');
      await poll(item);
    });
  }

  // A failed image is queued again by the service; anything that failed before S3 had the
  // file (a refused token, a network error) is uploaded again.
  function retry(item) {
    if (item.id && item.state === 'failed') {
      return run(item, async () => {
        await call('POST', '/v1/images/' + item.id + '/retry');
        setState(item, 'queued');
        await poll(item);
      });
    }
    // S3 has the file: the image is on its way, so watching it again is the retry (a new
    // upload would make a second image).
    if (item.uploaded) return run(item, () => poll(item));
    return start(item);
  }

  function uploadFiles(files) {
    if (!token()) {
      $('notice').textContent = 'Paste your API token first.';
      $('token').focus();
      return;
    }
    $('notice').textContent = '';
    for (const file of files) start(newItem(file));
  }

  // -- recent images ---------------------------------------------------------------------

  const recent = { cursor: null, next: null };

  function recentItem(rec) {
    const li = document.createElement('li');
    li.dataset.id = rec.id;
    li.dataset.state = rec.state;
    const small = rec.variants.slice().sort((a, b) => a.width - b.width)[0];
    if (rec.state === 'done' && small && small.url) {
      const img = document.createElement('img');
      img.src = small.url;
      img.alt = small.name + ' variant';
      img.width = small.width;
      img.height = small.height;
      li.append(img);
    }
    const text = document.createElement('div');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = rec.source.filename || rec.source.key;
    const meta = document.createElement('span');
    meta.className = 'meta';
    let what = rec.state;
    if (rec.state === 'failed' && rec.error) what += ': ' + rec.error.code;
    if (rec.source.width) what += ' · ' + rec.source.width + '×' + rec.source.height;
    meta.textContent = what + ' · ' + new Date(rec.created_at).toLocaleString();
    text.append(name, meta);
    li.append(text);
    return li;
  }

  async function loadRecent(cursor) {
    if (!token()) return;
    let path = '/v1/images?limit=' + encodeURIComponent($('recent-limit').value);
    if (cursor) path += '&cursor=' + encodeURIComponent(cursor);
    try {
      const page = await call('GET', path);
      recent.cursor = cursor;
      recent.next = page.next_cursor;
      $('recent').replaceChildren(...page.items.map(recentItem));
      $('recent-notice').textContent = page.items.length ? '' : 'No images yet.';
    } catch (e) {
      $('recent-notice').textContent = e.code + ': ' + e.message;
    }
    $('recent-next').disabled = !recent.next;
    $('recent-first').disabled = !recent.cursor;
  }

  function refreshRecentIfFirst() {
    if (!recent.cursor) loadRecent(null);
  }

  // -- wiring ----------------------------------------------------------------------------

  function init() {
    const input = $('token');
    input.value = sessionStorage.getItem(TOKEN_KEY) || '';
    let settle = null;
    input.addEventListener('input', () => {
      sessionStorage.setItem(TOKEN_KEY, token());
      clearTimeout(settle);
      settle = setTimeout(() => loadRecent(null), 400);
    });
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadRecent(null);
    });
    $('token-forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      input.value = '';
      $('recent').replaceChildren();
    });
    $('files').addEventListener('change', (ev) => {
      uploadFiles(Array.from(ev.target.files));
      ev.target.value = '';
    });
    const drop = $('drop');
    drop.addEventListener('dragover', (ev) => {
      ev.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (ev) => {
      ev.preventDefault();
      drop.classList.remove('over');
      uploadFiles(Array.from(ev.dataTransfer.files));
    });
    $('recent-refresh').addEventListener('click', () => loadRecent(recent.cursor));
    $('recent-first').addEventListener('click', () => loadRecent(null));
    $('recent-next').addEventListener('click', () => loadRecent(recent.next));
    $('recent-limit').addEventListener('change', () => loadRecent(null));
    loadRecent(null);
  }

  init();
}());

/* miffy dashboard: what differs, where, and why.
 *
 * Reads the agent's JSON API (/stats, /samples, /samples/ID: see
 * docs/dashboard-api.md), the same one a script would use. Every value that
 * comes from traffic (paths, headers, bodies, endpoint names) goes into the
 * page as text: createTextNode, textContent or an attribute value, never
 * markup. The page has no inline script and the agent serves it with a CSP
 * that forbids them, so a body holding <script> or onerror= runs nothing. */
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const SVG = 'http://www.w3.org/2000/svg';
  const view = document.getElementById('view');
  const crumbs = document.getElementById('crumbs');
  const statusEl = document.getElementById('status');
  const live = document.getElementById('live');
  const state = {
    timer: null,
    generation: 0,
    sort: { overview: { key: 'attention', desc: true }, fields: { key: 'verdict', desc: true } },
    hideNoise: false,
    openIgnore: null,
    fleet: null,
  };

  /* ---- DOM helpers: text only ---------------------------------------- */

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'onclick') e.addEventListener('click', v);
      else if (k === 'onchange') e.addEventListener('change', v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(e, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
  }

  function link(hash, ...children) {
    return el('a', { href: hash }, ...children);
  }

  /* ---- formatting ------------------------------------------------------ */

  function pct(part, whole) {
    return whole ? (100 * part) / whole : 0;
  }

  function fmtPct(v) {
    if (!v) return '0 %';
    return (v < 0.1 ? v.toFixed(2) : v < 10 ? v.toFixed(1) : v.toFixed(0)) + ' %';
  }

  function fmtMs(v) {
    if (v === undefined || v === null) return '–';
    return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

  function pointerEscape(k) {
    return String(k).replace(/~/g, '~0').replace(/\//g, '~1');
  }

  /* ---- data ------------------------------------------------------------- */

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    if (!r.ok) {
      let why = r.status + ' ' + r.statusText;
      try {
        const j = await r.json();
        if (j && j.error) why = j.error;
      } catch (e) { /* not JSON */ }
      const err = new Error(why);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  /* One overview row's numbers, from one /stats endpoint entry. */
  function rowOf(name, e) {
    const o = e.outcomes || {};
    const errs = o.candidate_error || 0;
    const lat = e.latency_ms || {};
    /* Fields that count as regressions: Diffy's verdict with a secondary,
     * else those that differed other than as noise. */
    const regressions = e.noise_fields ?
      Object.values(e.noise_fields).filter((f) => f.regression).length :
      Object.values(e.fields || {}).filter((f) => f.raw > f.noise).length;
    const r = {
      name,
      compared: e.compared || 0,
      compared_pct: e.compared_pct || 0,
      /* why the rest was not compared: "overload 12, candidate_cap 3" */
      shed: Object.entries(e.skipped || {}).map(([k, v]) => `${k} ${v}`).join(', '),
      different: e.different || 0,
      noise: e.noise || 0,
      errors: errs,
      different_pct: e.different_pct || 0,
      noise_pct: e.noise_pct || 0,
      error_pct: pct(errs, (e.compared || 0) + errs),
      skipped: o.skipped || 0,
      expired: o.expired || 0,
      dropped: o.dropped || 0,
      ref: lat.reference || {},
      cand: lat.candidate || {},
      slower: (e.latency_verdict || {}).slower || {},
      minutes: e.minutes,
      fields: Object.keys(e.fields || {}).length,
      regressions,
    };
    r.attention = r.different_pct + r.error_pct + r.noise_pct / 1000 + Math.min(r.compared, 1e6) / 1e9;
    return r;
  }

  function verdictOf(r) {
    if (r.errors && r.error_pct >= r.different_pct) return ['errors', 'candidate errors'];
    if (r.different) return ['regression', 'differs'];
    if (r.noise) return ['noise', 'noise only'];
    if (!r.compared) return ['idle', 'nothing compared'];
    return ['ok', 'equal'];
  }

  /* ---- sortable tables ------------------------------------------------ */

  /* columns: [{key, label, title, value(row) for sorting, cell(row) -> node|text, num}] */
  function sortableTable(cls, columns, rows, sort, rowAttrs, onSort) {
    const col = columns.find((c) => c.key === sort.key) || columns[0];
    const sorted = rows.slice().sort((a, b) => {
      const va = col.value(a), vb = col.value(b);
      let d = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
      if (d === 0) d = String(a.name || a.key).localeCompare(String(b.name || b.key));
      return sort.desc ? -d : d;
    });
    const head = el('tr', null, columns.map((c) => {
      const mark = c.key === sort.key ? (sort.desc ? ' ▼' : ' ▲') : '';
      return el('th', {
        class: c.num ? 'num sortable' : 'sortable', title: c.title || 'sort', 'data-sort': c.key,
        'aria-sort': c.key === sort.key ? (sort.desc ? 'descending' : 'ascending') : 'none',
        onclick: () => {
          if (sort.key === c.key) sort.desc = !sort.desc;
          else { sort.key = c.key; sort.desc = c.num !== false; }
          onSort();
        },
      }, c.label, mark);
    }));
    const body = sorted.map((r) => el('tr', rowAttrs(r), columns.map((c) => {
      const v = c.value(r);
      return el('td', { class: c.num ? 'num' : null, 'data-col': c.key, 'data-value': typeof v === 'number' ? v : null },
        c.cell ? c.cell(r) : String(v));
    })));
    return el('table', { class: cls }, el('thead', null, head), el('tbody', null, body));
  }

  /* ---- the last hour chart --------------------------------------------- */

  function chart(m) {
    const W = 120, H = 26, n = m && m.compared ? m.compared.length : 0;
    const s = svg('svg', { class: 'spark', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
    s.appendChild(svg('title', null, '% different per minute over the last hour (noise lighter)'));
    s.appendChild(svg('rect', { class: 'spark-bg', x: 0, y: 0, width: W, height: H }));
    if (!n) return s;
    const bw = W / n;
    for (let i = 0; i < n; i++) {
      const c = m.compared[i] + (m.candidate_error ? m.candidate_error[i] : 0);
      if (!c) continue;
      const d = m.different[i] / c, z = m.noise[i] / c, e = (m.candidate_error ? m.candidate_error[i] : 0) / c;
      let y = H;
      for (const [v, cls] of [[d, 'spark-diff'], [e, 'spark-err'], [z, 'spark-noise']]) {
        if (!v) continue;
        const h = Math.max(1, v * (H - 2));
        y -= h;
        s.appendChild(svg('rect', { class: cls, x: (i * bw).toFixed(2), y: y.toFixed(2), width: Math.max(1, bw - 0.5).toFixed(2), height: h.toFixed(2) },
          svg('title', null, `${n - 1 - i === 0 ? 'this minute' : (n - 1 - i) + ' min ago'}: ${m.different[i]} different, ${m.noise[i]} noise, ${m.candidate_error ? m.candidate_error[i] : 0} errors of ${c}`)));
      }
    }
    return s;
  }

  /* ---- views ------------------------------------------------------------ */

  function setCrumbs(...parts) {
    clear(crumbs);
    parts.forEach((p, i) => {
      if (i) crumbs.appendChild(document.createTextNode(' › '));
      crumbs.appendChild(p instanceof Node ? p : document.createTextNode(p));
    });
  }

  function summary(doc) {
    const o = doc.outcomes || {};
    const items = [
      ['compared', (o.equal || 0) + (o.different || 0) + (o.noise || 0)],
      ['different', o.different || 0],
      ['noise only', o.noise || 0],
      ['candidate errors', o.candidate_error || 0],
      ['skipped', o.skipped || 0],
      ['expired', o.expired || 0],
      ['dropped', o.dropped || 0],
    ];
    const s = doc.samples;
    if (s) items.push(['samples kept', s.stored], ['samples evicted', Object.values(s.evicted || {}).reduce((a, b) => a + b, 0)]);
    return el('div', { class: 'cards' }, items.map(([k, v]) =>
      el('div', { class: 'card', 'data-card': k }, el('div', { class: 'card-v' }, String(v)), el('div', { class: 'card-k' }, k))));
  }

  async function overview(gen) {
    const doc = await getJSON('/stats');
    state.fleet = doc.fleet || null;
    if (gen !== state.generation) return;
    setCrumbs('Endpoints');
    const rows = Object.entries(doc.endpoints || {}).map(([name, e]) => rowOf(name, e));
    const columns = [
      { key: 'name', label: 'Endpoint', num: false, value: (r) => r.name,
        cell: (r) => link('#/endpoint/' + enc(r.name), el('span', { class: 'endpoint' }, r.name)) },
      { key: 'attention', label: 'Look', title: 'what needs a look first: % different + % candidate errors, then noise',
        value: (r) => r.attention, cell: (r) => { const [c, t] = verdictOf(r); return el('span', { class: 'badge ' + c }, t); } },
      { key: 'compared', label: 'Compared', num: true, value: (r) => r.compared },
      { key: 'compared_pct', label: '% compared', num: true,
        title: 'share of the endpoint\'s exchanges compared; the rest were skipped (shed under load: overload, candidate_cap), failed or expired',
        value: (r) => r.compared_pct,
        cell: (r) => el('span', { class: r.compared_pct < 90 ? 'warn' : null, title: r.shed ? 'skipped: ' + r.shed : 'nothing skipped' },
          fmtPct(r.compared_pct)) },
      { key: 'different_pct', label: '% different', num: true, value: (r) => r.different_pct, cell: (r) => el('span', { class: r.different ? 'bad' : null }, fmtPct(r.different_pct)) },
      { key: 'noise_pct', label: '% noise only', num: true, value: (r) => r.noise_pct, cell: (r) => fmtPct(r.noise_pct) },
      { key: 'error_pct', label: '% cand. errors', num: true, value: (r) => r.error_pct, cell: (r) => el('span', { class: r.errors ? 'bad' : null }, fmtPct(r.error_pct)) },
      { key: 'fields', label: 'Fields', num: true, title: 'fields that are regressions / fields that differed',
        value: (r) => r.regressions * 1000 + r.fields,
        cell: (r) => el('span', { class: r.regressions ? 'bad' : null }, `${r.regressions} / ${r.fields}`) },
      { key: 'skipped', label: 'Skipped', num: true, value: (r) => r.skipped },
      { key: 'expired', label: 'Expired', num: true, value: (r) => r.expired },
      { key: 'p50', label: 'p50 ref | cand (ms)', num: true, title: 'sort by the candidate\'s p50 over the reference\'s',
        value: (r) => ratio(r.cand.p50, r.ref.p50), cell: (r) => latencyPair(r.ref.p50, r.cand.p50, r.slower.p50) },
      { key: 'p99', label: 'p99 ref | cand (ms)', num: true, title: 'sort by the candidate\'s p99 over the reference\'s',
        value: (r) => ratio(r.cand.p99, r.ref.p99), cell: (r) => latencyPair(r.ref.p99, r.cand.p99, r.slower.p99) },
      { key: 'hour', label: 'Last hour', num: true, title: '% different per minute', value: (r) => r.different_pct, cell: (r) => chart(r.minutes) },
    ];
    const table = rows.length ?
      sortableTable('overview', columns, rows, state.sort.overview, (r) => ({ 'data-endpoint': r.name }), refresh) :
      el('p', { class: 'muted' }, 'No exchange has ended yet: send traffic through HAProxy.');
    render(el('section', null,
      summary(doc),
      el('h2', null, 'Endpoints ', el('span', { class: 'muted small' }, 'sorted by what needs a look first; click a header to sort, a name for its fields')),
      table));
  }

  function ratio(b, a) {
    return a ? (b || 0) / a : 0;
  }

  /* Reference | candidate; the candidate in red when the agent's latency
   * verdict calls it slower at that quantile (/stats latency_verdict). */
  function latencyPair(a, b, slower) {
    return el('span', { class: 'pair' }, el('span', { 'data-ms': a || 0 }, fmtMs(a)), el('span', { class: 'sep' }, ' | '),
      el('span', { class: slower ? 'bad' : null, 'data-ms': b || 0,
        title: slower ? 'slower beyond latency_tolerance and latency_floor_ms' : null }, fmtMs(b)));
  }

  /* The verdict of one field and the rule that decided it. */
  function fieldVerdict(key, f, nf, e, settings) {
    const c = settings && settings.compare ? settings.compare : { noise_relative: 0.2, noise_absolute: 0.0003 };
    if (nf) {
      const raw = nf.raw, noise = nf.noise, delta = Math.abs(raw - noise), total = e.compared || 0;
      const rel = raw + noise ? delta / (raw + noise) : 0, abs = total ? delta / total : 0;
      const checks = [
        [`raw ${raw} > noise ${noise}`, raw > noise],
        [`|raw−noise|/(raw+noise) = ${fmtPct(100 * rel)} > ${fmtPct(100 * c.noise_relative)}`, rel > c.noise_relative],
        [`|raw−noise|/compared = ${fmtPct(100 * abs)} > ${fmtPct(100 * c.noise_absolute)}`, abs > c.noise_absolute],
      ];
      return {
        verdict: nf.regression ? 'regression' : 'noise',
        rule: 'Diffy\'s rule with the secondary: ' + checks.map(([t, ok]) => (ok ? '✓ ' : '✗ ') + t).join('; '),
      };
    }
    if (f.noise >= f.raw && f.raw)
      return { verdict: 'noise', rule: 'every time it differed, the secondary disagreed with the reference there too' };
    if (!settings || !settings.replay || !settings.replay.secondary)
      return { verdict: 'regression', rule: 'no secondary configured: every difference counts (configure one to tell noise apart)' };
    return { verdict: 'regression', rule: `differed ${f.raw} times, ${f.noise} of them noise` };
  }

  /* The confidence verdict of a field (with a secondary): its badge. */
  const CONF_LABEL = { regression: 'regression', noise: 'noise', insufficient_data: 'too few' };
  function confidenceCell(nf, conf) {
    const c = nf && nf.confidence;
    if (!c) return '–';
    const level = conf && conf.level ? conf.level : 0.95, min = conf && conf.min_exchanges ? conf.min_exchanges : 10;
    const title = `${c.n} exchanges with the secondary's answer: the candidate differed here in ` +
      `${fmtPct(pct(nf.raw, c.n))}, the secondary in ${fmtPct(pct(nf.noise, c.n))}; ` +
      `${Math.round(100 * level)} % interval of the difference [${c.lower.toFixed(4)}, ${c.upper.toFixed(4)}]` +
      (c.verdict === 'insufficient_data' ? ` (no verdict under ${min} exchanges)` : '');
    const cls = c.verdict === 'regression' ? 'regression' : c.verdict === 'noise' ? 'noise' : 'idle';
    return el('span', { class: 'badge ' + cls, title, 'data-verdict': c.verdict },
      `${CONF_LABEL[c.verdict] || c.verdict} [${c.lower.toFixed(2)}, ${c.upper.toFixed(2)}]`);
  }

  /* The latency verdict of an endpoint, in words. */
  function latencyVerdictText(v) {
    if (!v) return '';
    const x = (r) => (r === null || r === undefined ? '–' : '×' + r.toFixed(2));
    if (v.verdict === 'slower')
      return ` Candidate slower: p50 ${x(v.ratio.p50)}, p99 ${x(v.ratio.p99)} of the reference's.`;
    if (v.verdict === 'within_tolerance') return ' Candidate latency within tolerance.';
    return ' Latency: too few exchanges for a verdict yet.';
  }

  function parseField(key) {
    if (key === 'status') return { where: 'status', path: '' };
    const i = key.indexOf(':');
    if (i < 0) return { where: key, path: '' };
    return { where: key.slice(0, i), path: key.slice(i + 1) };
  }

  function confList(items, quote) {
    return '{' + items.map((s) => (quote || !/^[A-Za-z0-9_.-]+$/.test(s) ? JSON.stringify(s) : s)).join(', ') + '}';
  }

  /* The miffy.conf lines that would stop a field from being reported. */
  function ignoreLines(key, kinds, settings) {
    const c = (settings && settings.compare) || { ignore_headers: [], ignore_paths: [] };
    const f = parseField(key);
    if (f.where === 'status')
      return { lines: [], note: 'A status difference is never ignored: no rule hides it. Stop shadowing this endpoint in HAProxy (an ACL on the send-spoe-group rule) if it is expected.' };
    if (f.where === 'header') {
      const list = c.ignore_headers.includes(f.path) ? c.ignore_headers : c.ignore_headers.concat([f.path]);
      return { lines: ['ignore_headers = ' + confList(list, false)], note: 'ignore_headers replaces the default list: this line keeps the current one and adds ' + f.path + '.' };
    }
    if (!f.path)
      return { lines: [], note: 'The whole body differs (text or binary, or not JSON on one side): no path to ignore.' };
    const lines = [];
    const paths = c.ignore_paths.includes(f.path) ? c.ignore_paths : c.ignore_paths.concat([f.path]);
    lines.push('ignore_paths = ' + confList(paths, true));
    const wild = f.path.replace(/\/\d+(?=\/|$)/g, '/*');
    if (wild !== f.path) lines.push('ignore_paths = ' + confList(c.ignore_paths.concat([wild]), true) + '   # every element');
    if (kinds.has('order')) lines.push('unordered_paths = {' + JSON.stringify(f.path) + '}   # keep comparing it, ignore the order only');
    return { lines, note: 'In miffy.conf (a list: it replaces the current one, kept here). Rules are JSON Pointers, * one segment, ** any depth (docs/comparison.md).' };
  }

  function copyButton(getText, label) {
    const b = el('button', { type: 'button', class: 'copy' }, label || 'copy');
    b.addEventListener('click', () => {
      const text = getText();
      const done = () => { b.textContent = 'copied'; setTimeout(() => { b.textContent = label || 'copy'; }, 1500); };
      if (navigator.clipboard && navigator.clipboard.writeText)
        navigator.clipboard.writeText(text).then(done, () => { b.textContent = 'select the text to copy'; });
      else b.textContent = 'select the text to copy';
    });
    return b;
  }

  async function endpointView(gen, name, field) {
    const [doc, idx] = await Promise.all([getJSON('/stats'), getJSON('/samples?endpoint=' + enc(name))]);
    state.fleet = doc.fleet || null;
    if (gen !== state.generation) return;
    const e = (doc.endpoints || {})[name];
    setCrumbs(link('#/', 'Endpoints'), field ? link('#/endpoint/' + enc(name), name) : name, field || '');
    if (!e) {
      render(el('p', { class: 'muted' }, 'No such endpoint in /stats (yet): ', name));
      return;
    }
    const r = rowOf(name, e);
    const kinds = new Map(), sampleCount = new Map();
    for (const s of idx.samples || [])
      for (const f of s.fields || []) {
        if (!kinds.has(f.field)) kinds.set(f.field, new Set());
        kinds.get(f.field).add(f.kind);
        sampleCount.set(f.field, (sampleCount.get(f.field) || 0) + 1);
      }
    const nfs = e.noise_fields || {};
    let rows = Object.entries(e.fields || {}).map(([key, f]) => {
      const v = fieldVerdict(key, f, nfs[key], e, idx);
      const p = parseField(key);
      return { key, where: p.where, path: p.path, raw: f.raw, noise: f.noise, kinds: kinds.get(key) || new Set(),
        raw_pct: pct(f.raw, r.compared), noise_pct: pct(f.noise, r.compared), verdict: v.verdict, rule: v.rule,
        samples: sampleCount.get(key) || 0, secondary: nfs[key], conf: nfs[key] && nfs[key].confidence };
    });
    if (state.hideNoise) rows = rows.filter((x) => x.verdict !== 'noise');
    const columns = [
      { key: 'where', label: 'Where', num: false, value: (x) => x.where },
      { key: 'path', label: 'Field', num: false, value: (x) => x.path,
        cell: (x) => el('code', { class: 'path' }, x.path || (x.where === 'status' ? 'status' : '(whole body)')) },
      { key: 'kind', label: 'Kind', num: false, value: (x) => [...x.kinds].join(' '), cell: (x) => x.kinds.size ? [...x.kinds].join(', ') : '–' },
      { key: 'raw', label: 'Raw', num: true, title: 'exchanges where the candidate differed here', value: (x) => x.raw,
        cell: (x) => `${x.raw} (${fmtPct(x.raw_pct)})` },
      { key: 'noise', label: 'Noise', num: true, title: 'exchanges where it was noise (the secondary disagreed too)', value: (x) => x.noise,
        cell: (x) => `${x.noise} (${fmtPct(x.noise_pct)})` },
      { key: 'verdict', label: 'Verdict', num: null, value: (x) => (x.verdict === 'regression' ? 1e9 : 0) + x.raw - x.noise,
        cell: (x) => el('span', { class: 'badge ' + x.verdict, title: x.rule }, x.verdict) },
      { key: 'rule', label: 'Rule that decided', num: false, value: (x) => x.rule, cell: (x) => el('span', { class: 'rule' }, x.rule) },
      { key: 'confidence', label: 'Confidence', num: null,
        title: 'with a secondary: the 95 % interval of (candidate − secondary) difference rates, and its verdict (docs/comparison.md)',
        value: (x) => (x.conf ? x.conf.lower : -2), cell: (x) => confidenceCell(x.secondary, doc.noise_confidence) },
      { key: 'samples', label: 'Exchanges', num: true, value: (x) => x.samples,
        cell: (x) => x.samples ? link('#/endpoint/' + enc(name) + '/field/' + enc(x.key), `${x.samples} kept`) : '–' },
      { key: 'ignore', label: '', num: false, value: () => '', cell: (x) => el('button', {
        type: 'button', class: 'ignore', 'data-field': x.key,
        onclick: () => { state.openIgnore = state.openIgnore === name + '\n' + x.key ? null : name + '\n' + x.key; refresh(); },
      }, 'ignore…') },
    ];
    const parts = [
      el('h2', null, el('span', { class: 'endpoint' }, name)),
      el('p', { class: 'facts' }, `${fmtPct(r.compared_pct)} of its exchanges compared` +
        (r.shed ? ` (skipped: ${r.shed})` : '') + '. ' +
        `${r.compared} compared: ${r.different} different (${fmtPct(r.different_pct)}), ` +
        `${r.noise} noise only (${fmtPct(r.noise_pct)}), ${r.errors} candidate errors, ${r.skipped} skipped, ${r.expired} expired. ` +
        `Latency p50/p99 ms: reference ${fmtMs(r.ref.p50)}/${fmtMs(r.ref.p99)}, candidate ${fmtMs(r.cand.p50)}/${fmtMs(r.cand.p99)}.` +
        latencyVerdictText(e.latency_verdict)),
      el('label', { class: 'toggle' }, el('input', { type: 'checkbox', id: 'hide-noise', checked: state.hideNoise,
        onchange: (ev) => { state.hideNoise = ev.target.checked; refresh(); } }), ' hide noise'),
      el('h3', null, 'Fields that differed'),
    ];
    if (rows.length) {
      parts.push(sortableTable('fields', columns, rows, state.sort.fields,
        (x) => ({ 'data-field': x.key, class: field === x.key ? 'selected' : null }), refresh));
    } else {
      parts.push(el('p', { class: 'muted' }, 'No field differed.'));
    }
    if (state.openIgnore && state.openIgnore.startsWith(name + '\n')) {
      const key = state.openIgnore.slice(name.length + 1);
      const ig = ignoreLines(key, kinds.get(key) || new Set(), idx);
      parts.push(el('div', { class: 'ignore-box', id: 'ignore-box' },
        el('h4', null, 'To ignore ', el('code', null, key)),
        ig.lines.length ? el('pre', { class: 'conf' }, ig.lines.join('\n')) : null,
        ig.lines.length ? copyButton(() => ig.lines[0], 'copy the first line') : null,
        el('p', { class: 'muted' }, ig.note)));
    }
    const list = (idx.samples || []).filter((s) => !field || (s.fields || []).some((f) => f.field === field));
    parts.push(el('h3', null, field ? 'Recent exchanges that differed in ' : 'Recent exchanges that differed',
      field ? el('code', null, field) : null));
    if (list.length) {
      parts.push(el('table', { class: 'samples' },
        el('thead', null, el('tr', null, el('th', null, 'Time (UTC)'), el('th', null, 'Outcome'), el('th', null, 'Differences'), el('th', null, 'Exchange'))),
        el('tbody', null, list.map((s) => el('tr', { 'data-id': s.id },
          el('td', null, s.time.replace('T', ' ').replace('Z', '')),
          el('td', null, el('span', { class: 'badge ' + (s.outcome === 'different' ? 'regression' : s.outcome === 'noise' ? 'noise' : 'errors') }, s.outcome)),
          el('td', null, (s.fields || []).slice().sort((a, b) => a.noise - b.noise).map((f) =>
            el('span', { class: 'chip' + (f.noise ? ' noise' : ''), title: f.kind }, f.field))),
          el('td', null, link('#/exchange/' + enc(s.id), 'open')))))));
    } else {
      parts.push(el('p', { class: 'muted' }, 'None kept (samples are bounded: see /samples limits).'));
    }
    render(el('section', null, parts));
  }

  /* ---- the exchange ---------------------------------------------------- */

  function marksFor(diffs, side) {
    /* path -> 'diff' | 'noise'; a real difference wins over noise. */
    const m = new Map();
    for (const d of diffs || []) {
      if (d.where !== 'body') continue;
      if (side === 'reference' && d.kind === 'extra') continue;
      if (side !== 'reference' && d.kind === 'missing') continue;
      const k = d.noise ? 'noise' : 'diff';
      if (m.get(d.path) !== 'diff') m.set(d.path, k);
    }
    return m;
  }

  /* Members one side lacks (kind missing on the candidate, extra on the
   * reference): parent path -> [{key, mark}], shown as placeholders. */
  function ghostsFor(diffs, side) {
    const g = new Map();
    const kind = side === 'reference' ? 'extra' : side === 'candidate' ? 'missing' : null;
    for (const d of diffs || []) {
      if (d.where !== 'body' || d.kind !== kind || !d.path) continue;
      const at = d.path.lastIndexOf('/');
      const parent = d.path.slice(0, at), key = d.path.slice(at + 1).replace(/~1/g, '/').replace(/~0/g, '~');
      if (!g.has(parent)) g.set(parent, []);
      g.get(parent).push({ key, mark: d.noise ? 'hl-noise' : 'hl-diff', side: kind === 'missing' ? 'reference' : 'candidate' });
    }
    return g;
  }

  function jsonTree(v, path, marks, depth, ghosts) {
    ghosts = ghosts || new Map();
    const node = el('span', { class: 'j', 'data-path': path });
    const mark = marks.get(path);
    if (mark) node.classList.add(mark === 'diff' ? 'hl-diff' : 'hl-noise');
    const pad = (d) => '  '.repeat(d);
    if (Array.isArray(v)) {
      if (!v.length) { node.appendChild(document.createTextNode('[]')); return node; }
      node.appendChild(document.createTextNode('[\n'));
      v.forEach((item, i) => {
        node.appendChild(document.createTextNode(pad(depth + 1)));
        node.appendChild(jsonTree(item, path + '/' + i, marks, depth + 1, ghosts));
        node.appendChild(document.createTextNode(i < v.length - 1 ? ',\n' : '\n'));
      });
      node.appendChild(document.createTextNode(pad(depth) + ']'));
    } else if (v && typeof v === 'object') {
      const keys = Object.keys(v);
      if (!keys.length) { node.appendChild(document.createTextNode('{}')); return node; }
      node.appendChild(document.createTextNode('{\n'));
      keys.forEach((k, i) => {
        node.appendChild(document.createTextNode(pad(depth + 1)));
        node.appendChild(el('span', { class: 'jk' }, JSON.stringify(k)));
        node.appendChild(document.createTextNode(': '));
        node.appendChild(jsonTree(v[k], path + '/' + pointerEscape(k), marks, depth + 1, ghosts));
        node.appendChild(document.createTextNode(i < keys.length - 1 ? ',\n' : '\n'));
      });
      for (const gh of ghosts.get(path) || [])
        node.appendChild(el('span', { class: 'ghost ' + gh.mark, 'data-ghost': path + '/' + pointerEscape(gh.key) },
          pad(depth + 1) + JSON.stringify(gh.key) + ': (absent here, only in the ' + gh.side + ')\n'));
      node.appendChild(document.createTextNode(pad(depth) + '}'));
    } else {
      node.classList.add(v === null ? 'jn' : 'j' + typeof v);
      node.appendChild(document.createTextNode(JSON.stringify(v)));
    }
    return node;
  }

  function bodyView(b, marks, ghosts) {
    if (!b) return el('p', { class: 'muted' }, 'no body');
    const parts = [];
    if (b.cut) parts.push(el('p', { class: 'warn' }, `cut: the message shows part of a ${b.size} byte body`));
    if ('json' in b) {
      const whole = marks.get('');
      const pre = el('pre', { class: 'body json' + (whole ? (whole === 'diff' ? ' hl-diff' : ' hl-noise') : '') });
      pre.appendChild(jsonTree(b.json, '', marks, 0, ghosts));
      parts.push(pre);
    } else if ('text' in b) {
      const whole = marks.get('');
      parts.push(b.text === '' ? el('p', { class: 'muted' }, 'empty') :
        el('pre', { class: 'body text' + (whole ? ' hl-' + whole : '') }, b.text));
    } else if ('base64' in b) {
      parts.push(el('p', { class: 'muted' }, 'binary body, base64:'), el('pre', { class: 'body b64' }, b.base64));
    }
    return parts;
  }

  function headersView(h, diffs, cls) {
    const byName = new Map();
    for (const d of diffs || []) if (d.where === 'header') byName.set(d.path, byName.get(d.path) === 'diff' || !d.noise ? 'diff' : 'noise');
    const names = Object.keys(h || {});
    if (!names.length) return el('p', { class: 'muted' }, 'no headers');
    return el('table', { class: 'headers ' + (cls || '') }, el('tbody', null, names.map((n) => el('tr', {
      'data-header': n, class: byName.has(n) ? (byName.get(n) === 'diff' ? 'hl-diff' : 'hl-noise') : null,
    }, el('th', null, n), el('td', null, String(h[n]))))));
  }

  function responseColumn(title, resp, diffs, side) {
    const col = el('div', { class: 'side', 'data-side': side }, el('h3', null, title));
    if (!resp) return col;
    if (resp.error) {
      col.appendChild(el('p', { class: 'bad' }, 'replay failed: ', resp.error, resp.detail ? ' (' + resp.detail + ')' : ''));
      return col;
    }
    const statusDiff = (diffs || []).find((d) => d.where === 'status');
    col.appendChild(el('p', { class: 'status-line' + (statusDiff ? (statusDiff.noise ? ' hl-noise' : ' hl-diff') : ''), 'data-status': resp.status },
      'status ', el('strong', null, String(resp.status)),
      resp.latency_ms !== undefined ? el('span', { class: 'muted' }, ` · ${fmtMs(resp.latency_ms)} ms`) : null,
      resp.truncated ? el('span', { class: 'warn' }, ' · truncated') : null));
    col.appendChild(el('h4', null, 'Headers'));
    col.appendChild(headersView(resp.headers, diffs));
    col.appendChild(el('h4', null, 'Body'));
    append(col, [bodyView(resp.body, marksFor(diffs, side), ghostsFor(diffs, side))]);
    return col;
  }

  function shq(s) {
    return /^[A-Za-z0-9_\-.,:/=@%+]+$/.test(s) ? s : "'" + String(s).replace(/'/g, "'\\''") + "'";
  }

  /* The request as the agent replays it to the candidate (DESIGN.md,
   * "Shadow request"): same method, path, query, headers and body, minus
   * hop-by-hop ones and Host (unless preserve_host), plus the marker. */
  function curlFor(req, settings, candidateName) {
    const rp = (settings && settings.replay) || {};
    // with several candidates, the one this message is of (docs/candidates.md)
    const named = rp.candidates && candidateName ? rp.candidates[candidateName] : null;
    const base = String(named || rp.candidate || 'http://candidate').replace(/\/+$/, '');
    const url = base + req.path + (req.query ? '?' + req.query : '');
    const dropped = new Set(rp.dropped_headers || []);
    const headers = req.headers || {};
    const listed = String(headers.connection || '').toLowerCase().split(',').map((t) => t.trim()).filter(Boolean);
    const marker = rp.marker_header || 'X-Miffy-Role';
    const args = ['curl'];
    if (req.method === 'HEAD') args.push('--head');
    else if (req.method !== 'GET') args.push('-X', req.method);
    args.push(url);
    for (const [n, v] of Object.entries(headers)) {
      if (n === 'host' && rp.preserve_host) { args.push('-H', n + ': ' + v); continue; }
      if (dropped.has(n) || listed.includes(n) || n === marker.toLowerCase()) continue;
      args.push('-H', n + ': ' + v);
    }
    args.push('-H', marker + ': candidate');
    let pre = '';
    const b = req.body || {};
    if ('json' in b) args.push('--data-binary', JSON.stringify(b.json));
    else if ('text' in b && b.text !== '') args.push('--data-binary', b.text);
    else if ('base64' in b && b.base64) { pre = 'printf %s ' + shq(b.base64) + ' | base64 -d | '; args.push('--data-binary', '@-'); }
    return pre + args.map(shq).join(' ');
  }

  async function exchangeView(gen, id) {
    const msg = await getJSON('/samples/' + enc(id));
    const settings = await getJSON('/samples?endpoint=' + enc(msg.endpoint || ''));
    if (gen !== state.generation) return;
    setCrumbs(link('#/', 'Endpoints'), link('#/endpoint/' + enc(msg.endpoint || ''), msg.endpoint || ''), 'exchange ' + id);
    const diffs = msg.differences || [];
    const req = msg.request || {};
    const curl = curlFor(req, settings, msg.candidate_name);
    const redacted = Object.values(req.headers || {}).some((v) => v === '[redacted]');
    const secDiffs = diffs.filter((d) => d.noise);
    const parts = [
      el('h2', null, el('span', { class: 'badge ' + (msg.outcome === 'different' ? 'regression' : msg.outcome === 'noise' ? 'noise' : 'errors') }, msg.outcome),
        ' ', el('span', { class: 'endpoint' }, msg.endpoint || '')),
      el('p', { class: 'muted' }, `exchange ${msg.id} · ${msg.time}`, msg.candidate_name && msg.candidate_name !== 'candidate' ? ` · candidate ${msg.candidate_name}` : '', msg.cut ? ' · cut to fit the sample size' : ''),
      el('h3', null, `Differences (${diffs.length}${msg.differences_total ? ' of ' + msg.differences_total : ''})`),
      diffs.length ? el('table', { class: 'diffs' },
        el('thead', null, el('tr', null, ['Where', 'Path', 'Kind', 'Reference', 'Candidate', 'Verdict'].map((t) => el('th', null, t)))),
        el('tbody', null, diffs.map((d) => el('tr', { class: d.noise ? 'hl-noise' : 'hl-diff', 'data-where': d.where, 'data-path': d.path },
          el('td', null, d.where), el('td', null, el('code', null, d.path || (d.where === 'body' ? '(whole body)' : ''))), el('td', null, d.kind),
          el('td', null, el('code', null, 'reference' in d ? JSON.stringify(d.reference) : '–')),
          el('td', null, el('code', null, 'candidate' in d ? JSON.stringify(d.candidate) : '–')),
          el('td', null, el('span', { class: 'badge ' + (d.noise ? 'noise' : 'regression') }, d.noise ? 'noise' : 'regression')))))) :
        el('p', { class: 'muted' }, msg.outcome === 'candidate_error' ? 'The candidate did not answer: nothing to compare.' : 'none'),
      el('h3', null, 'Request'),
      el('p', { class: 'reqline' }, el('code', null, `${req.method || ''} ${req.path || ''}${req.query ? '?' + req.query : ''}`)),
      headersView(req.headers, [], 'request'),
      bodyView(req.body, new Map()),
      el('h4', null, 'As replayed to the candidate ', copyButton(() => curl, 'copy as curl')),
      el('pre', { class: 'curl', id: 'curl' }, curl),
      redacted ? el('p', { class: 'muted' }, 'Redacted header values are not kept by the agent: put the real ones in place of [redacted].') : null,
      el('div', { class: 'sides' + (msg.secondary ? ' three' : '') },
        responseColumn('Reference', msg.reference, diffs, 'reference'),
        responseColumn('Candidate', msg.candidate, diffs, 'candidate'),
        msg.secondary ? responseColumn('Secondary (noise)', msg.secondary, secDiffs, 'secondary') : null),
    ];
    render(el('section', null, parts));
  }

  /* ---- routing and refresh --------------------------------------------- */

  function render(node) {
    clear(view);
    view.appendChild(node);
  }

  function parseRoute() {
    const h = location.hash.replace(/^#\/?/, '');
    const parts = h.split('/');
    if (parts[0] === 'endpoint' && parts.length >= 2) {
      const name = decodeURIComponent(parts[1]);
      const field = parts[2] === 'field' && parts.length >= 4 ? decodeURIComponent(parts.slice(3).join('/')) : null;
      return { view: 'endpoint', name, field, live: true };
    }
    if (parts[0] === 'exchange' && parts.length >= 2)
      return { view: 'exchange', id: decodeURIComponent(parts.slice(1).join('/')), live: false };
    return { view: 'overview', live: true };
  }

  async function refresh() {
    const gen = ++state.generation;
    const r = parseRoute();
    clearTimeout(state.timer);
    try {
      if (r.view === 'endpoint') await endpointView(gen, r.name, r.field);
      else if (r.view === 'exchange') await exchangeView(gen, r.id);
      else await overview(gen);
      if (gen === state.generation) {
        const f = state.fleet;   /* served by `miffy report`: docs/fleet.md */
        const fleet = f ? 'fleet of ' + f.instances + ' agents (' + f.epochs + ' epochs) · ' : '';
        if (f && f.status !== 'ok') {
          statusEl.textContent = fleet + (f.stale ?
            'STALE: Kafka has not answered for ' + (f.kafka_last_contact_seconds < 0 ? 'ever' :
              f.kafka_last_contact_seconds.toFixed(0) + ' s') + ', showing the last view' :
            'loading the snapshots…');
          statusEl.className = 'status bad';
        } else {
          statusEl.textContent = fleet + 'updated ' + new Date().toLocaleTimeString();
          statusEl.className = 'status ok';
        }
      }
    } catch (err) {
      if (gen !== state.generation) return;
      statusEl.textContent = (err.status === 404 ? 'not found: ' : 'agent unreachable: ') + err.message;
      statusEl.className = 'status bad';
      if (r.view === 'exchange') render(el('p', { class: 'muted' }, 'This exchange is not kept (any more): ', err.message));
    }
    if (gen === state.generation && r.live && live.checked)
      state.timer = setTimeout(refresh, REFRESH_MS);
  }

  window.addEventListener('hashchange', () => { state.openIgnore = null; refresh(); });
  live.addEventListener('change', refresh);
  refresh();
})();

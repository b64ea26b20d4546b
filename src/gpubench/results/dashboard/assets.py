"""The dashboard's own script and style sheet (written beside plotly.min.js in
`assets/`): drawing the page's figures (those out of sight when they scroll into view)
and the index's filters. Small on purpose: the figures themselves are made in Python."""

DASHBOARD_JS = r"""(function () {
  'use strict';
  var blob = document.getElementById('gpubench-figures');
  var figs = blob ? JSON.parse(blob.textContent) : {};
  function draw(el) {
    if (el.getAttribute('data-drawn')) return;
    el.setAttribute('data-drawn', '1');
    var f = figs[el.id];
    // the small charts of the index without plotly's tool bar (it would cover the
    // change labels); a page's big charts keep it
    var config = {displaylogo: false, responsive: true,
                  displayModeBar: el.classList.contains('big') ? 'hover' : false};
    if (f) Plotly.newPlot(el, f.data, f.layout, config);
  }
  var charts = Array.prototype.slice.call(document.querySelectorAll('.chart'));
  var eager = Number(document.body.getAttribute('data-eager') || charts.length);
  var observer = null;
  if ('IntersectionObserver' in window) {
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { observer.unobserve(e.target); draw(e.target); }
      });
    }, {rootMargin: '600px 0px'});
  }
  charts.forEach(function (el, i) {
    if (i < eager || !observer) draw(el); else observer.observe(el);
  });

  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var selects = Array.prototype.slice.call(document.querySelectorAll('select[data-filter]'));
  var only = document.getElementById('only-regressions');
  var search = document.getElementById('search');
  var count = document.getElementById('count');
  function apply() {
    var shown = 0, words = search ? search.value.toLowerCase().trim() : '';
    cards.forEach(function (card) {
      var keep = selects.every(function (s) {
        return !s.value || card.getAttribute('data-' + s.getAttribute('data-filter')) === s.value;
      });
      if (keep && only && only.checked) keep = card.getAttribute('data-status') === 'regression';
      if (keep && words) keep = card.getAttribute('data-label').indexOf(words) >= 0;
      card.style.display = keep ? '' : 'none';
      if (keep) shown += 1;
    });
    if (count) count.textContent = shown + ' of ' + cards.length + ' series shown';
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  if (only) only.addEventListener('change', apply);
  if (search) search.addEventListener('input', apply);
  if (cards.length) apply();
})();
"""

DASHBOARD_CSS = """
body{font-family:system-ui,sans-serif;margin:20px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
a{color:#1565c0;text-decoration:none}a:hover{text-decoration:underline}
.facts{font-size:13px;color:#444;margin:2px 0}.note{color:#666;font-size:12px}
.filters{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ddd;
  z-index:10;font-size:13px;display:flex;flex-wrap:wrap;gap:12px;align-items:center}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px;margin-top:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px}
.card-head{font-size:13px;display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.card-head a{font-weight:600}.chart{min-height:200px}.big{min-height:360px}
.badge{font-size:11px;padding:1px 6px;border-radius:9px;background:#eee;white-space:nowrap}
.badge.regression{background:#fdecea;color:#b71c1c;font-weight:bold}
.badge.changed{background:#e8f5e9;color:#1b5e20}.machine{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
.t{text-align:left}.slower{color:#b00;font-weight:bold}.faster{color:#070}
"""

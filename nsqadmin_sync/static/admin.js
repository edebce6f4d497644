/* nsqadmin: a little progressive JavaScript.  Every page works without it:
 * forms post to the page and a confirmation page asks before destructive
 * actions.  With it: actions confirm with window.confirm() and call the
 * JSON API (same origin, so the server's cross-site check passes), the
 * counter ticks, and #auto-refresh reloads the page content every 5s. */
(function () {
  'use strict';
  document.documentElement.classList.remove('no-js');
  document.documentElement.classList.add('js');

  function showMessage(text, isError) {
    var box = document.getElementById('message');
    if (!box) { return; }
    box.textContent = '';
    if (!text) { return; }
    var p = document.createElement('p');
    p.className = isError ? 'error' : 'flash';
    p.textContent = text;
    box.appendChild(p);
  }

  function callApi(method, url, payload) {
    var init = {method: method, credentials: 'same-origin', headers: {'Accept': 'application/json'}};
    var token = document.querySelector('meta[name="nsqadmin-token"]');
    if (token && method !== 'GET') { init.headers['X-NSQAdmin-Token'] = token.getAttribute('content'); }
    if (payload !== null) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    return fetch(url, init).then(function (resp) {
      return resp.text().then(function (text) {
        var data = {};
        try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {message: text}; }
        if (!resp.ok) { throw new Error(data.message || ('HTTP ' + resp.status)); }
        return data;
      });
    });
  }

  function afterAction(data, next) {
    if (data && data.message) {
      try { sessionStorage.setItem('nsqadmin-message', data.message); } catch (e) { /* private mode */ }
    }
    if (next) { window.location.href = next; } else { window.location.reload(); }
  }

  function onActionSubmit(form, ev) {
    var button = form.querySelector('button[data-action]');
    var action = form.getAttribute('data-action');
    var question = button ? button.getAttribute('data-confirm') : '';
    ev.preventDefault();
    if (question && !window.confirm(question)) { return; }
    var method = form.getAttribute('data-api-method');
    var payload = null;
    if (action === 'tombstone') {
      payload = {topic: form.getAttribute('data-topic')};
    } else if (method === 'POST') {
      payload = {action: action};
    }
    if (button) { button.disabled = true; }
    callApi(method, form.getAttribute('data-api-url'), payload)
      .then(function (data) { afterAction(data, form.getAttribute('data-next')); })
      .catch(function (err) {
        if (button) { button.disabled = false; }
        showMessage(err.message, true);
      });
  }

  function onCreateSubmit(form, ev) {
    ev.preventDefault();
    var topic = form.querySelector('[name=topic]').value.trim();
    var channel = form.querySelector('[name=channel]').value.trim();
    callApi('POST', form.getAttribute('data-api-url'), {topic: topic, channel: channel})
      .then(function (data) { afterAction(data, null); })
      .catch(function (err) { showMessage(err.message, true); });
  }

  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!window.fetch || !form.classList) { return; }
    if (form.classList.contains('action-form')) {
      onActionSubmit(form, ev);
    } else if (form.classList.contains('create-form')) {
      onCreateSubmit(form, ev);
    }
  });

  function refreshContent() {
    fetch(window.location.href, {credentials: 'same-origin'}).then(function (resp) {
      return resp.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, 'text/html');
      var fresh = doc.getElementById('content');
      var current = document.getElementById('content');
      if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); }
      var warnings = doc.getElementById('warnings');
      var old = document.getElementById('warnings');
      if (old && !warnings) { old.remove(); }
    }).catch(function () { /* keep the last content */ });
  }

  function startCounter() {
    var total = document.getElementById('counter-total');
    if (!total) { return; }
    var rate = document.getElementById('counter-rate');
    var last = null;
    var lastAt = null;
    setInterval(function () {
      callApi('GET', total.getAttribute('data-api-url'), null).then(function (data) {
        var sum = 0;
        Object.keys(data.stats || {}).forEach(function (k) { sum += data.stats[k].message_count; });
        var now = Date.now();
        if (last !== null && now > lastAt && rate) {
          rate.textContent = (Math.max(0, sum - last) * 1000 / (now - lastAt)).toFixed(1) + ' msg/s';
        }
        last = sum;
        lastAt = now;
        total.textContent = sum.toLocaleString('en-US');
      }).catch(function () { /* try again next tick */ });
    }, 2000);
  }

  document.addEventListener('DOMContentLoaded', function () {
    try {
      var saved = sessionStorage.getItem('nsqadmin-message');
      if (saved) { sessionStorage.removeItem('nsqadmin-message'); showMessage(saved, false); }
    } catch (e) { /* private mode */ }
    var box = document.getElementById('auto-refresh');
    var timer = null;
    if (box) {
      try { box.checked = localStorage.getItem('nsqadmin-auto-refresh') === '1'; } catch (e) { /* ignore */ }
      var apply = function () {
        if (timer) { clearInterval(timer); timer = null; }
        if (box.checked) { timer = setInterval(refreshContent, 5000); }
        try { localStorage.setItem('nsqadmin-auto-refresh', box.checked ? '1' : '0'); } catch (e) { /* ignore */ }
      };
      box.addEventListener('change', apply);
      apply();
    }
    startCounter();
  });
}());

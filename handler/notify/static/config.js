// Channel configuration page of the Moodle bridge (the configurable tab's configurationUrl).
// Talks to Teams only through the Teams JavaScript library served beside it, and to the bridge
// with the user's Teams SSO token, which the server validates and checks against Moodle.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("page-data").textContent);
  var t = data.texts;
  var teams = window.microsoftTeams;
  var token = null;
  var entityId = null;
  var $ = function (id) { return document.getElementById(id); };

  function status(text, kind) {
    var s = $("status");
    s.textContent = text || "";
    s.className = kind || "";
  }

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        return { ok: r.ok, status: r.status, body: b };
      });
    });
  }

  function chosen() {
    var kinds = Array.prototype.slice
      .call(document.querySelectorAll("input[name=kind]:checked"))
      .map(function (k) { return k.value; });
    return { course: parseInt($("course").value, 10) || null, kinds: kinds, url: $("url").value.trim() };
  }

  var checkSeq = 0;
  function validate() {
    var c = chosen();
    var seq = ++checkSeq;
    if (!c.course || c.kinds.length === 0 || !c.url) {
      teams.pages.config.setValidityState(false);
      $("url-help").textContent = c.url ? "" : t.urlNeeded;
      return Promise.resolve(false);
    }
    // The server owns the allow-list: one rule, checked where it is enforced.
    return api("POST", "/connector/api/check-url", { url: c.url }).then(function (r) {
      if (seq !== checkSeq) return false;
      var ok = r.ok && r.body.ok === true;
      $("url-help").textContent = ok ? "" : (r.body.error || t.urlInvalid);
      $("url").setAttribute("aria-invalid", ok ? "false" : "true");
      teams.pages.config.setValidityState(ok);
      return ok;
    });
  }

  function fillCourses(courses, selected) {
    var sel = $("course");
    sel.innerHTML = "";
    var none = document.createElement("option");
    none.value = "";
    none.textContent = t.pickCourse;
    sel.appendChild(none);
    courses.forEach(function (c) {
      var o = document.createElement("option");
      o.value = String(c.id);
      o.textContent = c.name;
      if (selected && selected === c.id) o.selected = true;
      sel.appendChild(o);
    });
  }

  function save(saveEvent) {
    var c = chosen();
    var path = entityId ? "/connector/api/configs/" + encodeURIComponent(entityId) : "/connector/api/configs";
    status(t.saving);
    api("POST", path, { course: c.course, kinds: c.kinds, url: c.url, channel_name: data.channelName || "" })
      .then(function (r) {
        if (!r.ok) {
          status(r.body.error || t.saveFailed, "error");
          saveEvent.notifyFailure(r.body.error || t.saveFailed);
          return;
        }
        entityId = r.body.entity_id;
        var origin = window.location.origin;
        return teams.pages.config
          .setConfig({
            entityId: r.body.entity_id,
            contentUrl: origin + r.body.content_path,
            removeUrl: origin + r.body.remove_path,
            suggestedDisplayName: r.body.display_name
          })
          .then(function () {
            status(t.saved, "ok");
            saveEvent.notifySuccess();
          });
      })
      .catch(function (e) {
        status(t.saveFailed, "error");
        saveEvent.notifyFailure(String(e));
      });
  }

  function configure(ctx) {
    data.channelName = (ctx.channel && ctx.channel.displayName) || "";
    teams.pages.config.registerOnSaveHandler(save);
    ["course", "url"].forEach(function (id) { $(id).addEventListener("input", validate); });
    $("course").addEventListener("change", validate);
    Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (k) {
      k.addEventListener("change", validate);
    });
    return api("GET", "/connector/api/courses").then(function (r) {
      if (!r.ok) {
        status(r.body.error || t.loadFailed, "error");
        teams.pages.config.setValidityState(false);
        return;
      }
      return teams.pages.getConfig().then(function (existing) {
        entityId = existing && existing.entityId ? existing.entityId : null;
        if (!entityId) {
          fillCourses(r.body.courses, null);
          return validate();
        }
        return api("GET", "/connector/api/configs/" + encodeURIComponent(entityId)).then(function (c) {
          if (!c.ok) {
            status(c.body.error || t.loadFailed, "error");
            fillCourses(r.body.courses, null);
            return;
          }
          fillCourses(r.body.courses, c.body.course);
          Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (k) {
            k.checked = c.body.kinds.indexOf(k.value) >= 0;
          });
          $("url").value = c.body.url || "";
          status(c.body.disabled ? t.disabled + " " + c.body.disabled : "", c.body.disabled ? "error" : "");
          return validate();
        });
      });
    });
  }

  function remove(ctx) {
    teams.pages.config.registerOnRemoveHandler(function (removeEvent) {
      teams.pages.getConfig().then(function (existing) {
        if (!existing || !existing.entityId) { removeEvent.notifySuccess(); return; }
        return api("DELETE", "/connector/api/configs/" + encodeURIComponent(existing.entityId)).then(function (r) {
          if (r.ok) { status(t.removed, "ok"); removeEvent.notifySuccess(); }
          else { status(r.body.error || t.removeFailed, "error"); removeEvent.notifyFailure(r.body.error || t.removeFailed); }
        });
      });
    });
  }

  teams.app
    .initialize(data.origins.length ? data.origins : undefined)
    .then(function () { return teams.app.getContext(); })
    .then(function (ctx) {
      return teams.authentication.getAuthToken().then(function (tok) {
        token = tok;
        teams.app.notifySuccess();
        return data.mode === "remove" ? remove(ctx) : configure(ctx);
      });
    })
    .catch(function (e) {
      status(t.teamsFailed + " (" + String(e && e.message || e) + ")", "error");
    });
})();

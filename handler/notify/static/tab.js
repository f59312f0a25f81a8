// Content of the Moodle bridge's channel tab: the Moodle course the channel's team is synced
// with. The team's group id comes from the Teams context; the bridge checks the user's Teams
// SSO token and their enrolment before it answers. Every text is written with textContent:
// course and assignment names come from Moodle and are never read as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("page-data").textContent);
  var teams = window.microsoftTeams;
  var $ = function (id) { return document.getElementById(id); };
  var lang = data.lang;
  var t = texts(lang);

  function texts(locale) {
    var primary = String(locale || "").toLowerCase().split(/[-_]/)[0];
    return data.texts[primary] || data.texts[String(data.lang).slice(0, 2)] || data.texts.fr;
  }

  function status(text, kind) {
    var s = $("status");
    s.textContent = text || "";
    s.className = kind || "";
    s.hidden = !text;
  }

  // What the page ended up showing, for people reading the DOM (and the tests).
  function settle(what) { document.body.setAttribute("data-state", what); }

  function when(unix) {
    try {
      return new Intl.DateTimeFormat(lang, { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" })
        .format(new Date(unix * 1000));
    } catch (e) {
      return new Date(unix * 1000).toISOString();
    }
  }

  // A list item: a link to Moodle and a line with its date.
  function item(text, url, dateText, unix) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.textContent = text;
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    li.appendChild(a);
    var d = document.createElement("time");
    d.className = "when";
    d.dateTime = new Date(unix * 1000).toISOString();
    d.textContent = dateText;
    li.appendChild(d);
    return li;
  }

  function show(b) {
    document.title = b.course.name;
    $("course-name").textContent = b.course.name;
    $("course-short").textContent = b.course.shortname || "";
    $("course-link").textContent = t.open;
    $("course-link").href = b.course.url;
    $("due-title").textContent = t.due;
    $("news-title").textContent = t.news;
    b.assignments.forEach(function (a) {
      $("due").appendChild(item(a.name, a.url, t.dueOn + " " + when(a.due), a.due));
    });
    if (!b.assignments.length) { $("no-due").textContent = t.noDue; $("no-due").hidden = false; }
    if (b.announcements === null) {
      $("no-news").textContent = t.newsUnavailable; $("no-news").hidden = false;
    } else {
      b.announcements.forEach(function (n) { $("news").appendChild(item(n.title, n.url, when(n.created), n.created)); });
      if (!b.announcements.length) { $("no-news").textContent = t.noNews; $("no-news").hidden = false; }
    }
    status("");
    $("course").hidden = false;
    settle("course");
  }

  function load(team, token) {
    return fetch("/connector/api/tab?team=" + encodeURIComponent(team), {
      headers: { "Authorization": "Bearer " + token }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (r.ok && b.status === "ok") return show(b);
        if (r.ok && b.status === "unmapped") { status(t.unmapped, "notice"); return settle("unmapped"); }
        if (r.status === 403 && b.reason === "not_enrolled") { status(t.notEnrolled, "notice"); return settle("not-enrolled"); }
        if (r.status === 403) { status(t.notLinked, "notice"); return settle("not-linked"); }
        status(t.failed + (b.error ? " (" + b.error + ")" : ""), "error");
        settle("failed");
      });
    });
  }

  teams.app
    .initialize(data.origins.length ? data.origins : undefined)
    .then(function () { return teams.app.getContext(); })
    .then(function (ctx) {
      if (ctx.app && ctx.app.locale) {
        lang = ctx.app.locale;
        t = texts(lang);
        document.documentElement.lang = lang;
      }
      status(t.loading);
      var team = ctx.team && ctx.team.groupId;
      teams.app.notifySuccess();
      if (!team) { status(t.noTeam, "notice"); settle("no-team"); return; }
      return teams.authentication.getAuthToken().then(function (token) { return load(team, token); });
    })
    .catch(function (e) {
      status(t.teamsFailed + " (" + String(e && e.message || e) + ")", "error");
      settle("failed");
    });
})();

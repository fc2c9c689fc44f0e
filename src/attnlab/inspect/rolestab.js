/* attnlab explorer's "Roles" tab (roles_view.with_roles; payload.roles, see roles_view.py):
 * a tab bar above the attention view switches to the heat map of heads x roles (roles.js), and
 * the marked heads (the best induction and previous-token heads) are shown in the attention
 * view: a bar of buttons that select the head (its lines, its map), and a star on the head's
 * toggle and its model-view map. Clicking a head's row in the heat map selects it too.
 * Text only ever reaches the page through textContent.
 * State for tests and scripts: data-tab on the tab bar ("attention" | "roles"); data-marked
 * (its roles, space-separated) on the marked head toggles, model-view maps and buttons.
 */
var AttnRolesTab = (function () {
  "use strict";
  var R = window.AttnRoles;
  var NAMES = {induction: "induction head", previous: "previous-token head"};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function same(a, kind, layer, head) {
    return a.attention === kind && a.layer === layer && a.head === head;
  }

  function Tabs(view, data) {
    var self = this, root = view.root;
    this.view = view;
    this.data = data;
    this.bar = el("div", "attnlab tabs");
    this.bar.setAttribute("role", "tablist");
    this.buttons = {};
    [["attention", "Attention"], ["roles", "Roles"]].forEach(function (t) {
      var b = el("button", "tab", t[1]);
      b.type = "button";
      b.dataset.tab = t[0];
      b.setAttribute("role", "tab");
      b.addEventListener("click", function () { self.show(t[0]); });
      self.buttons[t[0]] = self.bar.appendChild(b);
    });
    this.panel = el("div", "attnlab roles-tab");
    this.panel.setAttribute("role", "tabpanel");
    root.parentNode.insertBefore(this.bar, root);
    root.parentNode.insertBefore(this.panel, root.nextSibling);
    this.buildPanel();
    this.markBar = el("div", "controls marked");
    view.note.parentNode.insertBefore(this.markBar, view.note);
    this.buildMarkBar();
    view.onHeads = function () { self.decorate(); };
    this.decorate();
    this.show("attention");
  }

  /** Show the tab "attention" or "roles". */
  Tabs.prototype.show = function (name) {
    this.view.root.hidden = name !== "attention";
    this.panel.hidden = name !== "roles";
    for (var k in this.buttons) {
      this.buttons[k].classList.toggle("on", k === name);
      this.buttons[k].setAttribute("aria-selected", k === name ? "true" : "false");
    }
    this.bar.dataset.tab = name;
  };

  /** Open the attention tab on one head of one kind and layer (its lines and its map). */
  Tabs.prototype.select = function (kind, layer, head) {
    this.show("attention");
    if (this.view.kind().name !== kind) this.view.showKind(kind);
    this.view.selectHeads([head], layer);
  };

  /** The roles a head is marked for (["induction", ...]) and the marks' description. */
  Tabs.prototype.marksOf = function (kind, layer, head) {
    var found = this.data.marked.filter(function (m) { return same(m, kind, layer, head); });
    return {roles: found.map(function (m) { return m.role; }),
            title: found.map(function (m) {
              return (NAMES[m.role] || m.role) + " (" + m.role + " score " +
                     m.score.toFixed(3) + ", no. " + m.rank + ")";
            }).join("; ")};
  };

  Tabs.prototype.buildPanel = function () {
    var self = this, d = this.data, p = this.panel;
    p.appendChild(el("h2", "", "Heads by role"));
    p.appendChild(el("div", "muted", "Each cell: the head's score on the role, probed on a few " +
      "texts and on random tokens repeated twice (not on the sentences shown). Roles in " +
      "[0, 1] are shaded from dark (0) to yellow (1); entropy is in nats and unshaded. " +
      "Outlined: the " + d.k + " highest heads of each role. Click a head to see its " +
      "attention on the sentence."));
    var table = p.appendChild(R.heatTable(d));
    var rows = table.querySelectorAll("tbody tr");
    d.heads.forEach(function (h, i) {
      var th = rows[i].firstChild, marks = self.marksOf(h.attention, h.layer, h.head);
      th.classList.add("pick");
      if (marks.roles.length) {
        th.dataset.marked = marks.roles.join(" ");
        th.title = R.label(h) + ": " + marks.title;
      }
      th.addEventListener("click", function () { self.select(h.attention, h.layer, h.head); });
    });
    p.appendChild(el("h2", "", "Best heads of each role"));
    p.appendChild(R.bestHeads(d));
    p.appendChild(el("h2", "", "How the heads were probed"));
    p.appendChild(R.probe(d));
  };

  /** The marked heads as buttons above the head view. */
  Tabs.prototype.buildMarkBar = function () {
    var self = this, bar = this.markBar, d = this.data;
    bar.appendChild(el("span", "", "Marked heads "));
    if (!d.marked.length) {
      bar.appendChild(el("span", "muted", "none: no head scores " + d.mark_least +
                         " or more on induction or previous-token"));
    }
    d.marked.forEach(function (m) {
      var b = el("button", "marked-head", (NAMES[m.role] || m.role) + ": " + R.label(m) + " " +
                 m.score.toFixed(2));
      b.type = "button";
      b.dataset.marked = m.role;
      b.dataset.attention = m.attention;
      b.dataset.layer = String(m.layer);
      b.dataset.head = String(m.head);
      b.title = "show this head on the sentence (" + m.role + " score " + m.score + ")";
      b.addEventListener("click", function () { self.select(m.attention, m.layer, m.head); });
      bar.appendChild(b);
    });
  };

  /** Star the marked heads' toggles and maps of the kind and layer shown. */
  Tabs.prototype.decorate = function () {
    var self = this, v = this.view, kind = v.kind() ? v.kind().name : null;
    var toggles = v.headBox.querySelectorAll(".head-toggle");
    for (var i = 0; i < toggles.length; i++) {
      mark(toggles[i], this.marksOf(kind, v.state.layer, +toggles[i].dataset.head));
    }
    var maps = v.modelView.querySelectorAll("canvas.cell");
    for (var j = 0; j < maps.length; j++) {
      mark(maps[j], this.marksOf(kind, +maps[j].dataset.layer, +maps[j].dataset.head));
    }
    var buttons = this.markBar.querySelectorAll("button.marked-head");
    for (var k = 0; k < buttons.length; k++) {
      var b = buttons[k], on = b.dataset.attention === kind && +b.dataset.layer ===
        v.state.layer && v.state.heads.length === 1 && v.state.heads[0] === +b.dataset.head;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    function mark(e, marks) {
      var on = marks.roles.length > 0;
      e.classList.toggle("marked", on);
      if (on) {
        e.dataset.marked = marks.roles.join(" ");
        e.title = (e.dataset.layer ? "layer " + e.dataset.layer + ", head " +
                   e.dataset.head + ": " : "") + marks.title;
      } else {
        delete e.dataset.marked;
      }
    }
    return self;
  };

  return {
    mount: function (view, data) { return new Tabs(view, data); },
    names: NAMES
  };
})();

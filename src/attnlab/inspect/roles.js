/* attnlab heads by role: a heat map of heads x roles drawn as a table (roles_view.py); its
   parts also make the explorer's Roles tab (rolestab.js).
   Every text goes in with textContent; nothing is fetched. */
var AttnRoles = (function () {
  "use strict";

  // matplotlib's viridis at 0, 1/4, 1/2, 3/4, 1 (the PNG heat map's colours)
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function colour(value) {  // value in [0, 1] -> "rgb(...)", linear between the stops
    var x = Math.min(1, Math.max(0, value)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(x)), t = x - i;
    var rgb = VIRIDIS[i].map(function (c, n) {
      return Math.round(c + t * (VIRIDIS[i + 1][n] - c));
    });
    return "rgb(" + rgb.join(", ") + ")";
  }

  function key(h) { return h.attention + "\u0000" + h.layer + "\u0000" + h.head; }
  function label(h) { return h.attention + " L" + h.layer + ".H" + h.head; }

  function topSets(data) {  // role -> {head key: rank}
    var sets = {};
    data.roles.forEach(function (role) {
      sets[role] = {};
      (data.top[role] || []).forEach(function (h, rank) { sets[role][key(h)] = rank + 1; });
    });
    return sets;
  }

  function cell(head, role, shaded, rank) {
    var score = head.scores[role];
    var td = el("td", null, score.toFixed(3));
    td.dataset.role = role;
    td.dataset.head = label(head);
    td.dataset.score = String(score);
    td.title = label(head) + ", " + role + ": " + String(score) +
      (rank ? " (no. " + rank + " of this role)" : "");
    if (shaded) {
      td.style.background = colour(score);
      td.style.color = score > 0.6 ? "#000" : "#fff";
    } else {
      td.className = "unshaded";
    }
    if (rank) {
      td.classList.add("top");
      td.dataset.top = String(rank);
    }
    return td;
  }

  function heatTable(data) {
    var shaded = {}, tops = topSets(data);
    data.shaded.forEach(function (r) { shaded[r] = true; });
    var table = el("table", "roles"), row = el("tr");
    row.appendChild(el("th", null, "head"));
    data.roles.forEach(function (role) {
      var th = el("th", null, role);
      th.dataset.role = role;
      if (!shaded[role]) th.title = role + ": nats, not on the 0-1 scale";
      row.appendChild(th);
    });
    table.appendChild(el("thead")).appendChild(row);
    var body = table.appendChild(el("tbody"));
    data.heads.forEach(function (head) {
      var tr = el("tr");
      tr.dataset.head = label(head);
      var th = el("th", null, label(head));
      th.title = head.module;
      tr.appendChild(th);
      data.roles.forEach(function (role) {
        tr.appendChild(cell(head, role, shaded[role], tops[role][key(head)]));
      });
      body.appendChild(tr);
    });
    return table;
  }

  function bestHeads(data) {
    var list = el("ul", "best");
    data.roles.forEach(function (role) {
      var li = el("li");
      li.appendChild(el("b", null, role + ": "));
      li.appendChild(document.createTextNode((data.top[role] || []).map(function (h) {
        return label(h) + " " + h.score.toFixed(3);
      }).join(", ")));
      list.appendChild(li);
    });
    return list;
  }

  function probe(data) {
    var dl = el("dl", "probe");
    Object.keys(data.probe || {}).forEach(function (name) {
      var value = data.probe[name];
      if (Array.isArray(value)) value = value.join(", ");
      else if (value !== null && typeof value === "object") value = JSON.stringify(value);
      dl.appendChild(el("dt", null, name.replace(/_/g, " ")));
      dl.appendChild(el("dd", null, value));
    });
    return dl;
  }

  function mount(root, data) {
    root.textContent = "";
    root.appendChild(el("h1", null, data.model + ": heads by role"));
    root.appendChild(el("p", "muted", "Each cell: the head's score on the role. Roles in [0, 1] " +
      "are shaded from dark (0) to yellow (1); entropy is in nats and left unshaded. Outlined: " +
      "the " + data.k + " highest heads of each role. Hover a cell for its exact score."));
    root.appendChild(heatTable(data));
    root.appendChild(el("h2", null, "Best heads of each role"));
    root.appendChild(bestHeads(data));
    root.appendChild(el("h2", null, "How the heads were probed"));
    root.appendChild(probe(data));
    root.dataset.ready = "1";
    return root;
  }

  return { mount: mount, colour: colour, heatTable: heatTable, bestHeads: bestHeads,
           probe: probe, label: label };
})();

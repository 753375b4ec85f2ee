/* lucent-dgn atlas: the unit grid of a layer page (variant and seed switch, sorting, pages).
   Reads the data embedded in <script id="atlas-data" type="application/json">; no requests. */
(function () {
  "use strict";
  var node = document.getElementById("atlas-data");
  var grid = document.getElementById("grid");
  if (!node || !grid) { return; }
  var data = JSON.parse(node.textContent);
  var state = { variant: data.variants[0], seed: String(data.seeds[0]), sort: "unit", page: 0 };

  function readHash() {
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (kv.length === 2 && kv[0] in state) { state[kv[0]] = decodeURIComponent(kv[1]); }
    });
    if (data.variants.indexOf(state.variant) < 0) { state.variant = data.variants[0]; }
    state.page = parseInt(state.page, 10) || 0;
  }

  function activation(unit) {
    var cell = unit.cells[state.variant + "/" + state.seed];
    return cell && typeof cell.act === "number" ? cell.act : null;
  }

  function ordered() {
    var units = data.units.slice();
    if (state.sort === "unit") { return units; }
    var sign = state.sort === "desc" ? -1 : 1;
    return units.sort(function (a, b) {
      var x = activation(a), y = activation(b);
      if (x === null || y === null) { return (x === null) - (y === null) || a.u - b.u; }
      return sign * (x - y) || a.u - b.u;
    });
  }

  function cellNode(unit) {
    var cell = unit.cells[state.variant + "/" + state.seed];
    var link = document.createElement("a");
    link.className = "unit";
    link.href = unit.href;
    var act = activation(unit);
    link.setAttribute("data-unit", unit.u);
    link.setAttribute("data-act", act === null ? "" : String(act));
    if (cell && cell.src) {
      var img = document.createElement("img");
      img.loading = "lazy";
      img.alt = "unit " + unit.u;
      img.src = cell.src;
      link.appendChild(img);
    } else {
      var box = document.createElement("div");
      box.className = "failed";
      box.textContent = cell ? "failed" : "not rendered";
      box.title = (cell && cell.error) || "";
      link.appendChild(box);
    }
    var caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = unit.u + (act === null ? "" : "  " + act.toPrecision(4));
    link.appendChild(caption);
    return link;
  }

  function render() {
    var units = ordered();
    var pages = Math.max(1, Math.ceil(units.length / data.perPage));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var fragment = document.createDocumentFragment();
    units.slice(state.page * data.perPage, (state.page + 1) * data.perPage).forEach(function (unit) {
      fragment.appendChild(cellNode(unit));
    });
    grid.replaceChildren(fragment);
    document.getElementById("page").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    Array.prototype.forEach.call(document.querySelectorAll("[data-variant]"), function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-variant") === state.variant));
    });
    document.getElementById("sort").value = state.sort;
    document.getElementById("seed").value = state.seed;
    history.replaceState(null, "", "#variant=" + state.variant + "&seed=" + state.seed + "&sort=" + state.sort +
                         "&page=" + state.page);
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-variant]"), function (button) {
    button.addEventListener("click", function () { state.variant = button.getAttribute("data-variant"); render(); });
  });
  document.getElementById("sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; render(); });
  document.getElementById("seed").addEventListener("change", function (e) { state.seed = e.target.value; render(); });
  document.getElementById("prev").addEventListener("click", function () { state.page -= 1; render(); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; render(); });
  readHash();
  render();
}());

// review.html of `corelab run`: sorting, filters and the QC image overlay. Inlined into the page by
// corelab.pipeline.review; every value comes from the table's cells (data-v holds a sort value other than the text).
(function () {
  "use strict";
  var table = document.getElementById("review");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var form = document.getElementById("filters");
  var shown = document.getElementById("shown");
  var noneShown = document.getElementById("none-shown");
  var textOrder = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  // Sorting: numbers numerically, text with numbers in it naturally (P2 before P10); empty cells
  // last in either direction; ties keep manifest order.
  function sortBy(column, type, descending) {
    var keyed = rows.map(function (row, index) {
      var cell = row.cells[column];
      var value = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
      return {row: row, index: index, empty: value.trim() === "", value: type === "num" ? parseFloat(value) : value};
    });
    keyed.sort(function (a, b) {
      if (a.empty !== b.empty) { return a.empty ? 1 : -1; }
      var order = 0;
      if (!a.empty) {
        order = type === "num" ? a.value - b.value : textOrder.compare(a.value, b.value);
        if (descending) { order = -order; }
      }
      return order || a.index - b.index;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }

  headers.forEach(function (th, column) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      sortBy(column, th.getAttribute("data-type"), descending);
    });
  });

  // Filters: a row is shown when it passes every one.
  function volumeColumn() {
    var name = form.elements.volume.value;
    return headers.findIndex(function (th, i) {
      return rows.length && rows[0].cells[i].getAttribute("data-col") === name;
    });
  }

  function number(input) {
    var value = input.value.trim();
    return value === "" || isNaN(parseFloat(value)) ? null : parseFloat(value);
  }

  function applyFilters() {
    var statuses = Array.prototype.filter.call(form.querySelectorAll("input[name=status]"),
      function (box) { return box.checked; }).map(function (box) { return box.value; });
    var site = form.elements.site ? form.elements.site.value : "";
    var text = form.elements.text.value.trim().toLowerCase();
    var reviewOnly = form.elements.review.checked;
    var column = volumeColumn();
    var low = number(form.elements.min), high = number(form.elements.max);
    var count = 0;
    rows.forEach(function (row) {
      var show = statuses.indexOf(row.getAttribute("data-status")) >= 0;
      show = show && (!site || row.getAttribute("data-site") === site);
      show = show && (!reviewOnly || row.getAttribute("data-review") === "yes");
      if (show && text) {
        show = row.querySelector("td.notes").textContent.toLowerCase().indexOf(text) >= 0;
      }
      if (show && (low !== null || high !== null)) {
        var cell = row.cells[column].getAttribute("data-v");
        var value = cell ? parseFloat(cell) : NaN;
        show = !isNaN(value) && (low === null || value >= low) && (high === null || value <= high);
      }
      row.hidden = !show;
      count += show ? 1 : 0;
    });
    shown.textContent = count + " of " + rows.length + " rows shown";
    noneShown.hidden = count > 0;
  }

  form.addEventListener("input", applyFilters);
  form.addEventListener("change", applyFilters);
  document.getElementById("reset-filters").addEventListener("click", function () {
    form.reset();  // synchronous, unlike a reset button's default action
    applyFilters();
  });

  // The QC overlay: a click on a thumbnail shows the full image; without script the link opens it.
  var overlay = document.getElementById("overlay");
  var overlayImg = document.getElementById("overlay-img");
  var overlayTitle = document.getElementById("overlay-title");
  var overlayOpen = document.getElementById("overlay-open");
  var current = null;

  function thumbs() {
    return Array.prototype.filter.call(body.querySelectorAll("a.thumb"), function (a) {
      return !a.closest("tr").hidden;
    });
  }

  function open(link) {
    current = link;
    overlayImg.src = link.getAttribute("href");
    overlayImg.alt = "QC image of " + link.getAttribute("data-id");
    overlayTitle.textContent = link.getAttribute("data-id");
    overlayOpen.href = link.getAttribute("href");
    overlay.hidden = false;
    document.getElementById("overlay-close").focus();
  }

  function close() {
    overlay.hidden = true;
    overlayImg.removeAttribute("src");
    if (current) { current.focus(); }
  }

  body.addEventListener("click", function (event) {
    var link = event.target.closest("a.thumb");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) { return; }
    event.preventDefault();
    open(link);
  });
  document.getElementById("overlay-close").addEventListener("click", close);
  overlay.addEventListener("click", function (event) { if (event.target === overlay) { close(); } });
  document.addEventListener("keydown", function (event) {
    if (overlay.hidden) { return; }
    if (event.key === "Escape") { close(); return; }
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      var list = thumbs(), at = list.indexOf(current);
      var next = list[at + (event.key === "ArrowRight" ? 1 : -1)];
      if (next) { open(next); }
      event.preventDefault();
    }
  });
})();

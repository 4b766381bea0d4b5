// clipseek web page: plain JavaScript, no build step, no third-party code.
// It talks to the same REST API as any other client: GET health, POST search,
// POST search/image, and shows images by id through thumbnails/ and images/.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const input = $("query");
  const count = $("count");
  const countValue = $("count-value");
  const fileInput = $("file");
  const chip = $("image-chip");
  const chipImage = $("chip-image");
  const chipName = $("chip-name");
  const message = $("message");
  const grid = $("results");
  const statusLine = $("status");
  const drop = $("drop");
  const modal = $("modal");
  const filterFields = {
    after: $("f-after"),
    before: $("f-before"),
    camera: $("f-camera"),
    min_size: $("f-size"),
    sort: $("f-sort"),
  };
  let filterTimer = 0; // one for all fields: a burst of changes is one search

  let maxUploadBytes = 20 * 1024 * 1024;
  let exampleImage = null; // {blob, name, url} while searching by an image
  let lastSearch = null; // "text" or "image": what a change of the result count re-runs
  let results = [];
  let current = null; // the AbortController of the request in flight
  let sequence = 0;
  let countTimer = 0;

  // -- states

  function setMessage(state, text, extra) {
    message.dataset.state = state;
    message.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.textContent = text;
    message.append(p);
    if (extra) {
      const q = document.createElement("p");
      q.className = "summary";
      q.textContent = extra;
      message.append(q);
    }
  }

  function plural(n, word) {
    return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") return body.detail;
    } catch (_) {
      /* not JSON: fall through */
    }
    return `The server answered ${response.status} ${response.statusText}.`;
  }

  // -- health

  async function loadHealth() {
    try {
      const response = await fetch("health", { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(await errorText(response));
      const health = await response.json();
      if (health.max_upload_bytes) maxUploadBytes = health.max_upload_bytes;
      statusLine.classList.remove("bad");
      statusLine.textContent = `${plural(health.indexed_images, "image")} · ${health.model}`;
      statusLine.title = `Index: ${health.index}`;
      if (health.status !== "ok" && health.message && !lastSearch) {
        setMessage("empty", health.message);
      }
    } catch (err) {
      markUnavailable(err);
    }
  }

  function markUnavailable(err) {
    statusLine.classList.add("bad");
    statusLine.textContent = "Server unavailable";
    statusLine.title = String((err && err.message) || err);
  }

  // The header is checked again now and then (and when the tab comes back), so it never
  // shows an image count from a server that has since stopped.
  const HEALTH_EVERY_MS = 15000;
  setInterval(() => {
    if (document.visibilityState === "visible") loadHealth();
  }, HEALTH_EVERY_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") loadHealth();
  });

  // -- searching

  async function run(request, describe) {
    if (current) current.abort();
    const controller = new AbortController();
    current = controller;
    const mine = ++sequence;
    grid.setAttribute("aria-busy", "true");
    setMessage("loading", describe);
    try {
      const response = await fetch(request.url, { ...request.init, signal: controller.signal });
      if (!response.ok) throw new Error(await errorText(response));
      const body = await response.json();
      if (mine !== sequence) return;
      show(body);
    } catch (err) {
      if (err.name === "AbortError" || mine !== sequence) return;
      results = [];
      grid.replaceChildren();
      if (err instanceof TypeError) markUnavailable(err);
      const text =
        err instanceof TypeError
          ? "Cannot reach the clipseek server. Is `clipseek serve` still running?"
          : err.message;
      setMessage("error", text);
    } finally {
      if (mine === sequence) {
        grid.removeAttribute("aria-busy");
        current = null;
      }
    }
  }

  function searchText() {
    const query = input.value.trim();
    if (!query) {
      if (exampleImage) return searchImage();
      input.focus();
      setMessage("idle", "Describe what you are looking for, in plain words.");
      return;
    }
    clearExample();
    lastSearch = "text";
    rememberInUrl(query);
    run(
      {
        url: "search",
        init: {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ query, top_k: Number(count.value), ...filterValues() }),
        },
      },
      "Searching…",
    );
  }

  function searchImage() {
    if (!exampleImage) return;
    lastSearch = "image";
    rememberInUrl(null);
    const data = new FormData();
    data.append("file", exampleImage.blob, exampleImage.name);
    data.append("top_k", count.value);
    for (const [key, value] of Object.entries(filterValues())) data.append(key, value);
    run({ url: "search/image", init: { method: "POST", body: data } }, "Finding similar photos…");
  }

  // -- filters: sent only when set, so a plain search stays a plain request

  function filterValues() {
    const values = {};
    for (const [key, field] of Object.entries(filterFields)) {
      const value = field.value.trim();
      if (value && !(key === "sort" && value === "score")) values[key] = value;
    }
    $("f-clear").hidden = Object.keys(values).length === 0;
    return values;
  }

  function rerun() {
    if (lastSearch === "image") searchImage();
    else if (lastSearch === "text" && input.value.trim()) searchText();
  }

  // "2024-07-14T10:00:00" -> "14 Jul 2024", in the page's language, without time zones.
  function takenDate(taken, withTime) {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?/.exec(taken || "");
    if (!m) return "";
    const date = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0)));
    const options = { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" };
    if (withTime && m[4]) Object.assign(options, { hour: "2-digit", minute: "2-digit" });
    return date.toLocaleString(undefined, options);
  }

  function useExample(blob, name) {
    if (!blob || !(blob.type || "").startsWith("image/")) {
      setMessage("error", `${name || "That file"} is not an image.`);
      return;
    }
    if (blob.size > maxUploadBytes) {
      const mb = (maxUploadBytes / 1024 / 1024).toFixed(0);
      setMessage("error", `${name} is too large to upload (the server accepts up to ${mb} MB).`);
      return;
    }
    clearExample();
    exampleImage = { blob, name: name || "image", url: URL.createObjectURL(blob) };
    chip.classList.remove("no-preview");
    chipImage.src = exampleImage.url;
    chipName.textContent = exampleImage.name;
    chip.hidden = false;
    input.value = "";
    input.placeholder = "Searching by this image — or type to search by text";
    searchImage();
  }

  function clearExample() {
    if (exampleImage) URL.revokeObjectURL(exampleImage.url);
    exampleImage = null;
    chip.hidden = true;
    chipImage.removeAttribute("src");
    input.placeholder = "Describe a photo, e.g. a dog playing in the park";
  }

  function rememberInUrl(query) {
    const url = new URL(window.location.href);
    if (query) url.searchParams.set("q", query);
    else url.searchParams.delete("q");
    url.searchParams.set("n", count.value);
    history.replaceState(null, "", url);
  }

  // -- results

  // A file name that is not UTF-8 arrives with each odd byte as a lone surrogate
  // (\udc80-\udcff, see the README); it is shown as \xHH, as in the terminal.
  function shownPath(path) {
    return path.replace(/(?<![\ud800-\udbff])[\udc80-\udcff]/g, (c) => {
      return `\\x${(c.charCodeAt(0) - 0xdc00).toString(16).padStart(2, "0")}`;
    });
  }

  function basename(path) {
    const parts = path.split(/[\\/]/); // split before escaping: an escape has a backslash
    return shownPath(parts[parts.length - 1] || path);
  }

  // The folder a result is in, shortened to its last two parts: same-named files from
  // different folders must look different.
  function folderOf(path) {
    const parts = path.split(/[\\/]/).slice(0, -1).filter(Boolean).map(shownPath);
    if (!parts.length) return "/";
    const tail = parts.slice(-2).join("/");
    return parts.length > 2 ? `…/${tail}` : `/${tail}`;
  }

  function show(body) {
    results = body.results || [];
    grid.replaceChildren();
    if (!results.length) {
      setMessage(
        "empty",
        "No results.",
        "Nothing indexed matches here; try other words, or index more folders with `clipseek index`.",
      );
      return;
    }
    const notes = (body.notes || []).join(" ");
    setMessage("done", "", "");
    if (notes) setMessage("done", notes);
    const best = Math.max(...results.map((r) => r.score), 0.0001);
    const fragment = document.createDocumentFragment();
    results.forEach((result, index) => fragment.append(card(result, index, best)));
    grid.append(fragment);
  }

  function card(result, index, best) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card";
    button.dataset.index = String(index);
    button.title = shownPath(result.path);

    const thumb = document.createElement("div");
    thumb.className = "thumb";
    if (result.image) {
      const img = document.createElement("img");
      img.src = result.image;
      img.alt = basename(result.path);
      img.decoding = "async";
      thumb.append(img);
    } else {
      const missing = document.createElement("span");
      missing.className = "missing";
      missing.textContent = "Preview unavailable";
      thumb.append(missing);
    }
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${result.rank}`;
    thumb.append(rank);
    if (result.taken) {
      const taken = document.createElement("span");
      taken.className = "taken";
      taken.textContent = takenDate(result.taken, false);
      if (result.taken_source !== "exif") {
        // the file's time, not the camera's: said on the label, as the app and CLI say it
        taken.textContent += " · file time";
        taken.classList.add("file-time");
        taken.title = "The file's time (no date in the photo)";
      }
      thumb.append(taken);
    }

    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = basename(result.path);
    const folder = document.createElement("span");
    folder.className = "folder";
    folder.textContent = folderOf(result.path);
    const row = document.createElement("div");
    row.className = "score-row";
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    // A text search's bar is the match on the model family's own scale (the server's
    // `match`: half full where the text fits, CLIP or SigLIP alike); a search by image
    // has no such scale, so its bar is relative to the best hit.
    const calibrated = typeof result.match === "number";
    const fraction = calibrated ? result.match : result.score / best;
    fill.style.width = `${Math.max(calibrated ? 0 : 4, Math.min(100, fraction * 100))}%`;
    bar.append(fill);
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", matchWords(result));
    row.title = matchWords(result);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = result.score.toFixed(3);
    row.append(bar, score);
    meta.append(name, folder, row);

    button.append(thumb, meta);
    button.addEventListener("click", () => openModal(index));
    return button;
  }

  /** What a result's bar shows, in words (its tooltip and its label for screen readers). */
  function matchWords(result) {
    if (result.verdict) {
      return `${result.verdict[0].toUpperCase()}${result.verdict.slice(1)} match ` +
        `(${Math.round(result.match * 100)}% on this model's scale; score ${result.score.toFixed(3)})`;
    }
    return `Score ${result.score.toFixed(3)}, against the best hit's`;
  }

  // -- modal

  function openModal(index) {
    const result = results[index];
    if (!result) return;
    modal.dataset.index = String(index);
    const img = $("modal-image");
    img.alt = basename(result.path);
    img.src = result.image || "";
    const large = new Image();
    large.onload = () => {
      if (modal.dataset.index === String(index)) img.src = large.src;
    };
    large.src = `${result.thumbnail_url.replace(/^\//, "")}?size=1280`;
    $("modal-name").textContent = basename(result.path);
    $("modal-score").textContent = result.verdict
      ? `score ${result.score.toFixed(3)} · ${result.verdict} match`
      : `score ${result.score.toFixed(3)}`;
    $("modal-rank").textContent = `#${result.rank} of ${results.length}`;
    $("modal-size").textContent =
      result.width && result.height ? `· ${result.width} × ${result.height}` : "";
    const when = takenDate(result.taken, true);
    $("modal-taken").textContent = when
      ? `Taken ${when}${result.taken_source === "exif" ? "" : " (file time)"}`
      : "";
    $("modal-camera").textContent = result.camera ? `· ${result.camera}` : "";
    $("modal-path").textContent = shownPath(result.path);
    $("modal-open").href = result.image_url.replace(/^\//, "");
    $("modal-copy").textContent = "Copy path";
    if (!modal.open) modal.showModal();
  }

  async function copyPath() {
    const path = $("modal-path").textContent;
    try {
      await navigator.clipboard.writeText(path);
      $("modal-copy").textContent = "Copied";
    } catch (_) {
      // Not a secure context (a LAN address over http): select it for Ctrl-C instead.
      const range = document.createRange();
      range.selectNodeContents($("modal-path"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $("modal-copy").textContent = "Press Ctrl-C";
    }
  }

  async function findSimilar() {
    const result = results[Number(modal.dataset.index)];
    if (!result) return;
    modal.close();
    try {
      const response = await fetch(result.image_url.replace(/^\//, ""));
      if (!response.ok) throw new Error(await errorText(response));
      useExample(await response.blob(), basename(result.path));
    } catch (err) {
      setMessage("error", err.message);
    }
  }

  // -- wiring

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    searchText();
  });

  count.addEventListener("input", () => {
    countValue.textContent = count.value;
    clearTimeout(countTimer);
    countTimer = setTimeout(() => {
      if (lastSearch === "image") searchImage();
      else if (lastSearch === "text" && input.value.trim()) searchText();
    }, 250);
  });

  for (const [key, field] of Object.entries(filterFields)) {
    const delay = key === "camera" || key === "min_size" ? 400 : 0;
    field.addEventListener(key === "sort" ? "change" : "input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => {
        filterValues();
        rerun();
      }, delay);
    });
  }
  $("f-clear").addEventListener("click", () => {
    clearTimeout(filterTimer);
    for (const field of Object.values(filterFields)) field.value = field.tagName === "SELECT" ? "score" : "";
    filterValues();
    rerun();
  });

  // TIFF, HEIC and friends: the server reads them, the browser cannot draw them.
  chipImage.addEventListener("error", () => {
    if (exampleImage) chip.classList.add("no-preview");
  });

  $("pick-image").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) useExample(file, file.name);
    fileInput.value = "";
  });
  $("chip-clear").addEventListener("click", () => {
    clearExample();
    lastSearch = null;
    input.focus();
  });

  $("modal-close").addEventListener("click", () => modal.close());
  modal.addEventListener("click", (event) => {
    if (event.target === modal) modal.close(); // a click on the backdrop
  });
  $("modal-copy").addEventListener("click", copyPath);
  $("modal-similar").addEventListener("click", findSimilar);
  document.addEventListener("keydown", (event) => {
    if (!modal.open) {
      if (event.key === "/" && document.activeElement !== input) {
        event.preventDefault();
        input.focus();
      }
      return;
    }
    const index = Number(modal.dataset.index);
    if (event.key === "ArrowRight" && index + 1 < results.length) openModal(index + 1);
    if (event.key === "ArrowLeft" && index > 0) openModal(index - 1);
  });

  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    drop.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) drop.hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    drop.hidden = true;
    const file = event.dataTransfer.files[0];
    if (file) useExample(file, file.name);
  });
  window.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) =>
      f.type.startsWith("image/"),
    );
    if (file) {
      event.preventDefault();
      useExample(file, file.name || "pasted image");
    }
  });

  // -- start

  const params = new URLSearchParams(window.location.search);
  const n = Number(params.get("n"));
  if (n >= Number(count.min) && n <= Number(count.max)) count.value = String(n);
  countValue.textContent = count.value;
  loadHealth();
  if (params.get("q")) {
    input.value = params.get("q");
    searchText();
  } else {
    input.focus();
  }
})();

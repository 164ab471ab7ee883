// The slide viewer: OpenSeadragon over the DZI tile API, overlays (image, object tiles, vectors
// when zoomed in), an opacity slider and a scale bar in micrometres.
(function () {
  const el = document.getElementById("osd");
  const id = el.dataset.slide;
  const VECTOR_ZOOM = 0.5; // screen px per image px above which objects come as vectors
  const state = {viewer: null, info: null, active: {}, vectors: 0, ready: false};
  window.studioViewer = state;
  const viewer = OpenSeadragon({
    element: el, prefixUrl: "/static/vendor/openseadragon/images/",
    tileSources: `/api/slides/${id}.dzi`, showNavigator: true, maxZoomPixelRatio: 4,
    crossOriginPolicy: false, animationTime: 0.3,
  });
  state.viewer = viewer;
  const bar = document.createElement("div"); bar.id = "scalebar"; el.appendChild(bar);
  const canvas = document.createElement("canvas"); canvas.id = "vectors";
  const opacity = document.getElementById("opacity");
  const base = () => viewer.world.getItemAt(0);
  function imageZoom() { return base() ? base().viewportToImageZoom(viewer.viewport.getZoom(true)) : 0; }
  function scalebar() {
    if (!state.info || !state.info.mpp || !base()) { bar.textContent = "no µm/px"; return; }
    const umPerPx = state.info.mpp / imageZoom();
    let len = 100 * umPerPx, p = Math.pow(10, Math.floor(Math.log10(len)));
    const nice = [1, 2, 5, 10].map(k => k * p).filter(v => v <= len).pop();
    const label = nice >= 1000 ? `${nice / 1000} mm` : `${nice} µm`;
    bar.innerHTML = `<span style="width:${nice / umPerPx}px"></span>${label}`;
    document.getElementById("zoom-info").textContent = `zoom ${imageZoom().toFixed(3)} screen px / image px`;
  }
  function draw(fc) {
    const ctx = canvas.getContext("2d");
    const c = viewer.canvas; canvas.width = c.clientWidth; canvas.height = c.clientHeight;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!fc) return;
    const p0 = base().imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const s = base().imageToViewerElementCoordinates(new OpenSeadragon.Point(1, 0)).x - p0.x;
    ctx.globalAlpha = parseFloat(opacity.value);
    const X = x => p0.x + x * s, Y = y => p0.y + y * s;
    for (const f of fc.features) {
      const g = f.geometry, col = f.properties.color;
      ctx.strokeStyle = col; ctx.fillStyle = col + "55"; ctx.lineWidth = 2;
      const rings = g.type === "Polygon" ? [g.coordinates[0]] : g.type === "MultiPolygon" ? g.coordinates.map(p => p[0])
        : g.type === "Point" ? [[g.coordinates]] : g.coordinates;
      for (const ring of rings) {
        if (g.type === "Point" || g.type === "MultiPoint") {
          for (const q of (g.type === "Point" ? [g.coordinates] : g.coordinates)) {
            ctx.beginPath(); ctx.arc(X(q[0]), Y(q[1]), Math.max(3, 4 * s), 0, 7); ctx.fill(); ctx.stroke();
          }
          break;
        }
        ctx.beginPath(); ring.forEach((q, i) => i ? ctx.lineTo(X(q[0]), Y(q[1])) : ctx.moveTo(X(q[0]), Y(q[1])));
        ctx.closePath(); ctx.fill(); ctx.stroke();
      }
    }
  }
  let pending = null;
  function refreshVectors() {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const objs = Object.entries(state.active).filter(([, a]) => a.kind === "objects");
      const zoomedIn = imageZoom() >= VECTOR_ZOOM;
      let merged = {features: []}; state.vectors = 0;
      for (const [lid, a] of objs) {
        let shown = false;
        if (zoomedIn) {
          const b = base().viewportToImageRectangle(viewer.viewport.getBounds(true));
          const q = new URLSearchParams({layer: lid, x0: Math.max(0, b.x), y0: Math.max(0, b.y),
            x1: b.x + b.width, y1: b.y + b.height});
          const fc = await fetch(`/api/slides/${id}/vectors?${q}`).then(r => r.json());
          if (!fc.truncated) { merged.features.push(...fc.features); shown = true; }
        }
        a.item.setOpacity(shown ? 0 : parseFloat(opacity.value));
      }
      state.vectors = merged.features.length;
      draw(merged);
      el.dataset.vectors = String(state.vectors);
    }, 150);
  }
  async function toggle(layer, on) {
    if (!on) {
      const a = state.active[layer.id];
      if (a) viewer.world.removeItem(a.item);
      delete state.active[layer.id]; refreshVectors(); return;
    }
    const info = state.info, q = encodeURIComponent(layer.id);
    let src, width = 1;
    if (layer.kind === "image") {
      const r = await fetch(`/api/slides/${id}/overlay.png?layer=${q}`);
      width = parseFloat(r.headers.get("X-Overlay-Width")) / info.width_px;
      src = {type: "image", url: URL.createObjectURL(await r.blob())};
    } else {
      src = {width: info.width_px, height: info.height_px, tileSize: info.tile_px, minLevel: 0,
        getTileUrl: (l, x, y) => `/api/slides/${id}/otiles/${l}/${x}_${y}.png?layer=${q}`};
    }
    viewer.addTiledImage({tileSource: src, x: 0, y: 0, width: width, opacity: parseFloat(opacity.value),
      success: e => { state.active[layer.id] = {kind: layer.kind, item: e.item}; el.dataset.layers = Object.keys(state.active).join(","); refreshVectors(); }});
  }
  viewer.addHandler("open", async () => {
    viewer.canvas.appendChild(canvas);
    state.info = await fetch(`/api/slides/${id}/overlays`).then(r => r.json());
    const list = document.getElementById("layer-list"); list.innerHTML = "";
    for (const layer of state.info.layers) {
      const lab = document.createElement("label");
      const box = document.createElement("input"); box.type = "checkbox"; box.dataset.layer = layer.id;
      box.onchange = () => toggle(layer, box.checked);
      lab.appendChild(box); lab.append(" " + layer.label); list.appendChild(lab);
    }
    if (!state.info.layers.length) list.textContent = "no overlays for this slide yet";
    scalebar(); state.ready = true; el.dataset.ready = "1";
  });
  viewer.addHandler("animation", scalebar);
  viewer.addHandler("animation-finish", () => { scalebar(); refreshVectors(); });
  viewer.addHandler("update-viewport", () => { if (state.vectors) refreshVectors(); });
  opacity.oninput = () => { for (const a of Object.values(state.active)) a.item.setOpacity(parseFloat(opacity.value)); refreshVectors(); };
})();

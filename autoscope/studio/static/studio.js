// AutoSCOPE Studio: the CSRF-carrying fetch, the live job page. No library, nothing fetched elsewhere.
const csrf = document.querySelector('meta[name="csrf-token"]').content;
function post(url) {
  return fetch(url, {method: "POST", headers: {"x-csrf-token": csrf}}).then(r => r.json());
}
const logEl = document.getElementById("job-log");
if (logEl) {
  const id = logEl.dataset.job;
  const poll = () => fetch(`/api/jobs/${id}`).then(r => r.json()).then(j => {
    logEl.textContent = j.log;
    logEl.scrollTop = logEl.scrollHeight;
    const st = document.getElementById("job-status");
    st.textContent = j.status; st.className = "st-" + j.status;
    document.getElementById("job-exit").textContent = j.exit_code === null ? "" : `exit ${j.exit_code}`;
    if (j.status === "queued" || j.status === "running") setTimeout(poll, 1000);
  });
  poll();
  document.getElementById("cancel").onclick = () => post(`/api/jobs/${id}/cancel`).then(poll);
  document.getElementById("rerun").onclick = () =>
    post(`/api/jobs/${id}/rerun`).then(j => { location.href = `/jobs/${j.id}`; });
}

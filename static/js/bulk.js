// The catalog's bulk bar: "select all on this page", the checked count, and a confirmation
// dialog that names the change and how many movies it applies to before the form is sent
// (without JavaScript the server asks on a page instead).
(() => {
  const form = document.getElementById("bulk");
  if (!form) return;
  const picks = () => Array.from(document.querySelectorAll("input.pick[form=bulk]"));
  const selectPage = document.getElementById("select-page");
  const checkedCount = document.getElementById("checked-count");
  const dialog = document.getElementById("bulk-dialog");
  const update = () => {
    const boxes = picks();
    const n = boxes.filter((b) => b.checked).length;
    checkedCount.textContent = String(n);
    selectPage.checked = n > 0 && n === boxes.length;
    selectPage.indeterminate = n > 0 && n < boxes.length;
  };
  selectPage.addEventListener("change", () => {
    picks().forEach((b) => { b.checked = selectPage.checked; });
    update();
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches && event.target.matches("input.pick[form=bulk]")) update();
  });
  update();
  form.addEventListener("submit", (event) => {
    if (form.elements.confirmed) return; // confirmed in the dialog: send
    event.preventDefault();
    const byFilter = form.elements.scope.value === "filter";
    const count = byFilter ? Number(form.dataset.total) : picks().filter((b) => b.checked).length;
    const genre = form.elements.genre.selectedOptions[0];
    if (!genre || !genre.value) { form.elements.genre.reportValidity(); return; }
    if (count === 0) { alert("Check some movies first, or choose all matching this filter."); return; }
    const adding = form.elements.action.value === "add";
    document.getElementById("bulk-question").textContent =
      `${adding ? "Add" : "Remove"} ${genre.textContent} ${adding ? "to" : "from"} ${count.toLocaleString()} movie${count === 1 ? "" : "s"}` +
      `${byFilter ? " (all matching this filter)" : ""}? One change set; you can undo it.`;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("bulk-confirm").focus();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "confirm") return;
    const confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirmed";
    confirmed.value = "1";
    form.appendChild(confirmed);
    form.submit();
  });
})();

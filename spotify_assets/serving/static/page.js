// Like buttons of the recommendation page: POST /api/feedback and show what was stored.
"use strict";

async function sendFeedback(button, likedPid) {
  const list = document.getElementById("recommendations");
  const status = button.parentElement.querySelector(".status");
  const body = {
    user_id: list.dataset.user,
    liked_playlist: likedPid,
    shown_playlists: JSON.parse(list.dataset.shown),
    impression_id: Number(list.dataset.impression),
  };
  for (const b of document.querySelectorAll("button.like, button.none")) b.disabled = true;
  try {
    const response = await fetch("/api/feedback", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.status === 201) {
      status.textContent = `Stored as feedback #${answer.feedback_id}`;
      status.className = "status ok";
      status.dataset.feedbackId = String(answer.feedback_id);
    } else {
      status.textContent = `Not stored (${response.status}): ${JSON.stringify(answer.detail)}`;
      status.className = "status err";
      for (const b of document.querySelectorAll("button.like, button.none")) b.disabled = false;
    }
  } catch (error) {
    status.textContent = `Not stored: ${error}`;
    status.className = "status err";
    for (const b of document.querySelectorAll("button.like, button.none")) b.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.like")) {
    button.addEventListener("click", () => sendFeedback(button, Number(button.dataset.pid)));
  }
  for (const button of document.querySelectorAll("button.none")) {
    button.addEventListener("click", () => sendFeedback(button, null));
  }
});

// Service worker: the "Check with aivsreal" entry on images. Scoring happens in result.html (an extension
// page), because service workers have no canvas to decode images with and cannot load the ONNX Runtime
// wasm build's modules.

const MENU_ID = "aivsreal-check";

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.create({ id: MENU_ID, title: "Check with aivsreal", contexts: ["image"] });
});

/** Open the result window for an image URL (what the menu entry does; tests call it directly). */
function checkImage(srcUrl) {
  const url = chrome.runtime.getURL(`result.html?src=${encodeURIComponent(srcUrl)}`);
  return chrome.windows.create({ url, type: "popup", width: 440, height: 560 });
}
globalThis.checkImage = checkImage;

chrome.contextMenus.onClicked.addListener((info) => {
  if (info.menuItemId === MENU_ID && info.srcUrl) checkImage(info.srcUrl);
});

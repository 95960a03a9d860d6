import{a,b,c,d,e,f,g,h}from"./chunk-5FYQB3PU.js";export{c as MAX_PIXELS,d as ScoreError,h as Scorer,f as decodeImage,g as inputFromDecoded,b as scoreFromLogit,e as sniff,a as toInput};

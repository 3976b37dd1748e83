"""Reports as files (CSV, XLSX), built as bytes so the dashboards can offer them as downloads
and `ticketflow report` can write them."""
